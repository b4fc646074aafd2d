//! `govcloud-operator hub-backup` and `hub-restore`: the hub's decisions and declarations
//! written to a file and back (the document and its checks: `govcloud_core::rebuild`).

use anyhow::{Context as _, Result, bail};
use jiff::Timestamp;
use kube::api::{ApiResource, DynamicObject, ListParams, Patch, PatchParams, PostParams};
use kube::{Api, Client};
use serde_json::{Value, json};

use govcloud_core::rebuild::{self, API_VERSION, KINDS};
use k8s_openapi::api::core::v1::Namespace;

fn resource(kind: &str, plural: &str) -> ApiResource {
    ApiResource {
        group: "govcloud.io".into(),
        version: "v1alpha1".into(),
        api_version: API_VERSION.into(),
        kind: kind.into(),
        plural: plural.into(),
    }
}

/// Every object of the kinds a hub backup holds (with `selector`, only those it selects),
/// as the backup document.
pub async fn backup(client: &Client, selector: Option<&str>) -> Result<Value> {
    let mut items = Vec::new();
    let lp = match selector {
        Some(s) => ListParams::default().labels(s),
        None => ListParams::default(),
    };
    for (kind, plural, _) in KINDS {
        let api: Api<DynamicObject> = Api::all_with(client.clone(), &resource(kind, plural));
        let list = api
            .list(&lp)
            .await
            .with_context(|| format!("listing {plural} on the hub"))?;
        let mut objs: Vec<Value> = list
            .items
            .into_iter()
            .filter_map(|mut o| {
                o.types = Some(kube::api::TypeMeta {
                    api_version: API_VERSION.into(),
                    kind: kind.into(),
                });
                serde_json::to_value(o).ok()
            })
            .map(|v| rebuild::keep(&v))
            .collect();
        objs.sort_by_key(|o| {
            (
                o["metadata"]["namespace"].as_str().unwrap_or("").to_string(),
                o["metadata"]["name"].as_str().unwrap_or("").to_string(),
            )
        });
        items.extend(objs);
    }
    Ok(rebuild::bundle(items, &Timestamp::now().to_string()))
}

/// What a restore did, per object: `created`, `exists` (left as it is) or `would create`.
#[derive(Debug, Default)]
pub struct Restored {
    /// `(kind, namespace/name, what happened)`.
    pub lines: Vec<(String, String, String)>,
}

/// Recreates the objects of backup `doc` on the hub of `client`: refuses a document that
/// fails its checks; creates missing namespaces; creates each object that does not exist
/// (annotated with the backup's digest) and writes its recorded status; leaves existing
/// objects alone. With `dry_run`, only says what it would do.
pub async fn restore(client: &Client, doc: &Value, dry_run: bool) -> Result<Restored> {
    let items = match rebuild::check(doc) {
        Ok(i) => i,
        Err(e) => bail!("refusing the hub backup: {e}"),
    };
    let digest = doc["digest"].as_str().unwrap_or_default();
    let namespaces: Api<Namespace> = Api::all(client.clone());
    let mut out = Restored::default();
    for (body, status) in rebuild::restore_plan(&items, digest) {
        let kind = body["kind"].as_str().unwrap_or_default().to_string();
        let plural = KINDS
            .iter()
            .find(|(k, _, _)| *k == kind)
            .map(|(_, p, _)| *p)
            .unwrap_or_default();
        let name = body["metadata"]["name"].as_str().unwrap_or_default().to_string();
        let ns = body["metadata"]["namespace"].as_str().map(str::to_string);
        let id = match &ns {
            Some(n) => format!("{n}/{name}"),
            None => name.clone(),
        };
        let api: Api<DynamicObject> = match &ns {
            Some(n) => Api::namespaced_with(client.clone(), n, &resource(&kind, plural)),
            None => Api::all_with(client.clone(), &resource(&kind, plural)),
        };
        if api.get_opt(&name).await?.is_some() {
            out.lines.push((kind, id, "exists".into()));
            continue;
        }
        if dry_run {
            out.lines.push((kind, id, "would create".into()));
            continue;
        }
        if let Some(n) = &ns
            && namespaces.get_opt(n).await?.is_none()
        {
            let ns_obj: Namespace = serde_json::from_value(json!({"metadata": {"name": n}}))?;
            match namespaces.create(&PostParams::default(), &ns_obj).await {
                Ok(_) => {}
                Err(kube::Error::Api(e)) if e.code == 409 => {}
                Err(e) => return Err(e).with_context(|| format!("creating namespace {n}")),
            }
        }
        let obj: DynamicObject = serde_json::from_value(body)?;
        api.create(&PostParams::default(), &obj)
            .await
            .with_context(|| format!("creating {kind} {id}"))?;
        if let Some(st) = status {
            api.patch_status(&name, &PatchParams::default(), &Patch::Merge(json!({"status": st})))
                .await
                .with_context(|| format!("writing the recorded status of {kind} {id}"))?;
        }
        out.lines.push((kind, id, "created".into()));
    }
    Ok(out)
}

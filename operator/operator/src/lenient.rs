//! Watching custom resources that may not parse.
//!
//! A typed watcher lists a kind as one `ObjectList<K>`: a single object that no longer fits
//! the Rust type (created before a schema tightened, or written while the CRD was replaced
//! by hand) fails the whole list, and with it every object of the kind — the controller
//! stalls (kube-rs#774). Here each object is parsed on its own: the ones that parse flow on
//! as usual; the others are logged once, counted in `govcloud_unparseable_objects{kind}`
//! and reported with a Warning event on the object itself, and are otherwise left alone
//! (the operator neither reconciles nor deletes anything because of them).

use std::borrow::Cow;
use std::collections::HashSet;
use std::fmt::Debug;
use std::sync::{Arc, Mutex};

use futures::{Stream, StreamExt as _};
use kube::api::{Api, ObjectMeta};
use kube::runtime::events::{Event as KubeEvent, EventType, Recorder};
use kube::runtime::reflector::{self, Store};
use kube::runtime::watcher::{self, Event};
use kube::runtime::{WatchStreamExt as _, reflector::store::Writer};
use kube::{Client, Resource};
use serde::de::{Deserialize, DeserializeOwned, Deserializer};
use tracing::warn;

/// The backoff of every watch of the operator: 0.5 s, doubling (with jitter) to at most
/// 5 s, reset by any event. kube's default grows to 30 s, which a watch reaches after about
/// a minute of failures (an API server down that long) and then waits out once it is back.
/// (The long blindness after a hub API server restart was not this: see `without_errors`.)
pub fn watch_backoff() -> watcher::ExponentialBackoff {
    backon::ExponentialBuilder::default()
        .with_min_delay(std::time::Duration::from_millis(500))
        .with_max_delay(std::time::Duration::from_secs(5))
        .with_factor(2.0)
        .with_jitter()
        .without_max_times()
        .into()
}

/// Watch events of `api`. The initial state is streamed (`sendInitialEvents`, the
/// API server's WatchList feature, on by default since Kubernetes 1.34): one object per
/// event from the API server's watch cache, where a paged list would hold pages of up to 500
/// whole objects — their response bodies and parsed JSON — in memory at once, per watch
/// (about 10 MiB less at 200 agencies, measured in docs/performance.md). An API server that
/// refuses streamed lists (400/422: the feature is off or unknown), at the first list or a
/// later re-list, is listed in pages instead, for the life of this watch.
pub fn watch<K>(
    api: Api<K>,
    config: watcher::Config,
) -> impl Stream<Item = Result<Event<K>, watcher::Error>> + Send + 'static
where
    K: Resource + Clone + DeserializeOwned + Debug + Send + 'static,
{
    let streamed = watcher::watcher(api.clone(), config.clone().streaming_lists()).boxed();
    futures::stream::unfold(
        (streamed, Some((api, config))),
        |(mut stream, mut fallback)| async move {
            loop {
                let item = stream.next().await?;
                match &item {
                    // Armed for the life of the watch: a re-list (after 410 Gone) streams again,
                    // and an API server rolled back or replaced by an older one refuses it.
                    Err(e) if fallback.is_some() && streaming_refused(e) => {
                        if let Some((api, config)) = fallback.take() {
                            tracing::info!(
                                url = %api.resource_url(), error = %e,
                                "the API server does not stream initial lists; listing in pages"
                            );
                            stream = watcher::watcher(api, config).boxed();
                        }
                        continue;
                    }
                    _ => {}
                }
                return Some((item, (stream, fallback)));
            }
        },
    )
}

/// Whether a watch error is the API server refusing `sendInitialEvents` (Bad Request or
/// Unprocessable Entity), as opposed to a failure the watcher retries.
fn streaming_refused(e: &watcher::Error) -> bool {
    let refused = |code: u16| code == 400 || code == 422;
    match e {
        watcher::Error::WatchStartFailed(kube::Error::Api(s)) | watcher::Error::WatchFailed(kube::Error::Api(s)) => {
            refused(s.code)
        }
        watcher::Error::WatchError(s) => refused(s.code),
        _ => false,
    }
}

/// An object as the API server returned it: parsed, or its metadata and why it did not parse.
#[derive(Clone, Debug)]
// Both variants hold a whole object's worth of data; boxing would only add an allocation.
#[allow(clippy::large_enum_variant)]
pub enum Lenient<K> {
    /// It fits the Rust type.
    Parsed(K),
    /// It does not; `error` says where.
    Unparseable {
        /// The object's metadata (always readable: the API server validates it).
        meta: ObjectMeta,
        /// The deserialisation error.
        error: String,
    },
}

impl<K: Resource<DynamicType = ()>> Resource for Lenient<K> {
    type DynamicType = ();
    type Scope = K::Scope;

    fn kind(dt: &()) -> Cow<'_, str> {
        K::kind(dt)
    }

    fn group(dt: &()) -> Cow<'_, str> {
        K::group(dt)
    }

    fn version(dt: &()) -> Cow<'_, str> {
        K::version(dt)
    }

    fn plural(dt: &()) -> Cow<'_, str> {
        K::plural(dt)
    }

    fn meta(&self) -> &ObjectMeta {
        match self {
            Lenient::Parsed(k) => k.meta(),
            Lenient::Unparseable { meta, .. } => meta,
        }
    }

    fn meta_mut(&mut self) -> &mut ObjectMeta {
        match self {
            Lenient::Parsed(k) => k.meta_mut(),
            Lenient::Unparseable { meta, .. } => meta,
        }
    }
}

impl<'de, K: DeserializeOwned> Deserialize<'de> for Lenient<K> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let value = serde_json::Value::deserialize(d)?;
        Ok(parse(value))
    }
}

/// The annotation `kubectl apply` (client-side) leaves: the whole object again, as JSON.
const LAST_APPLIED: &str = "kubectl.kubernetes.io/last-applied-configuration";

/// Parses one object, keeping its metadata when the rest does not fit `K`.
/// `managedFields` and kubectl's last-applied copy are dropped: the operator never reads
/// them, and together they are often larger than the object (objects applied with
/// `kubectl apply` would take twice the memory in the stores). No object read here is
/// ever written back whole, so nothing is lost on the API server.
pub fn parse<K: DeserializeOwned>(mut value: serde_json::Value) -> Lenient<K> {
    if let Some(meta) = value.get_mut("metadata").and_then(serde_json::Value::as_object_mut) {
        meta.remove("managedFields");
        let now_empty = meta
            .get_mut("annotations")
            .and_then(serde_json::Value::as_object_mut)
            .is_some_and(|a| {
                a.remove(LAST_APPLIED);
                a.is_empty()
            });
        if now_empty {
            meta.remove("annotations");
        }
    }
    match K::deserialize(&value) {
        Ok(k) => Lenient::Parsed(k),
        Err(e) => Lenient::Unparseable {
            meta: value
                .get("metadata")
                .and_then(|m| ObjectMeta::deserialize(m).ok())
                .unwrap_or_default(),
            error: e.to_string(),
        },
    }
}

/// Where unparseable objects are reported: a gauge per kind, a Warning event per object
/// (once per resourceVersion) and the log.
#[derive(Clone)]
pub struct Reporter {
    inner: Arc<Inner>,
}

struct Inner {
    gauge: prometheus::IntGaugeVec,
    recorder: Recorder,
    seen: Mutex<Seen>,
}

#[derive(Default)]
struct Seen {
    /// (kind, uid) of the objects that do not parse now.
    bad: HashSet<(String, String)>,
    /// (kind, uid, resourceVersion) already reported.
    reported: HashSet<(String, String, String)>,
}

impl Reporter {
    /// A reporter publishing events with `recorder` and counting in `gauge` (label `kind`).
    pub fn new(gauge: prometheus::IntGaugeVec, recorder: Recorder) -> Reporter {
        Reporter {
            inner: Arc::new(Inner {
                gauge,
                recorder,
                seen: Mutex::default(),
            }),
        }
    }

    fn set_gauge(&self, kind: &str, bad: &HashSet<(String, String)>) {
        let n = bad.iter().filter(|(k, _)| k == kind).count();
        self.inner.gauge.with_label_values(&[kind]).set(n as i64);
    }

    /// An object of `kind` parsed (again): no longer counted.
    fn parsed(&self, kind: &str, meta: &ObjectMeta) {
        let uid = meta.uid.clone().unwrap_or_default();
        if let Ok(mut g) = self.inner.seen.lock()
            && g.bad.remove(&(kind.to_string(), uid.clone()))
        {
            g.reported.retain(|(k, u, _)| !(k == kind && *u == uid));
            self.set_gauge(kind, &g.bad);
        }
    }

    /// An object of `kind` was deleted.
    fn deleted(&self, kind: &str, meta: &ObjectMeta) {
        self.parsed(kind, meta);
    }

    /// An object of `kind` does not parse: log, count, and tell its owner on the object.
    fn unparseable<K: Resource<DynamicType = ()>>(&self, obj: &Lenient<K>, error: &str) {
        let kind = K::kind(&()).to_string();
        let meta = obj.meta();
        let uid = meta.uid.clone().unwrap_or_default();
        let version = meta.resource_version.clone().unwrap_or_default();
        let first = match self.inner.seen.lock() {
            Ok(mut g) => {
                g.bad.insert((kind.clone(), uid.clone()));
                self.set_gauge(&kind, &g.bad);
                g.reported.insert((kind.clone(), uid, version))
            }
            Err(_) => false,
        };
        if !first {
            return;
        }
        let name = meta.name.clone().unwrap_or_default();
        let namespace = meta.namespace.clone().unwrap_or_default();
        warn!(
            kind = %kind, %namespace, %name, %error,
            "cannot read this object (it does not fit the current schema); it is left alone, the others are reconciled"
        );
        let note = format!(
            "The operator cannot read this {kind}: {error}. It was probably written before the schema changed. \
             Fix the field (kubectl edit) or delete and re-create the object; until then the operator leaves it \
             and everything it created alone."
        );
        let event = KubeEvent {
            type_: EventType::Warning,
            reason: "Unparseable".into(),
            note: Some(govcloud_core::conditions::truncate(
                &note,
                govcloud_core::conditions::EVENT_NOTE_MAX,
            )),
            action: "Read".into(),
            secondary: None,
        };
        let reference = obj.object_ref(&());
        let recorder = self.inner.recorder.clone();
        if let Ok(handle) = tokio::runtime::Handle::try_current() {
            handle.spawn(async move {
                if let Err(e) = recorder.publish(&event, &reference).await {
                    warn!(error = %e, "cannot publish the Unparseable event");
                }
            });
        }
    }
}

/// Watch events of `K` in which objects that do not parse are reported and left out.
pub fn events<K>(
    client: Client,
    config: watcher::Config,
    reporter: Reporter,
) -> impl Stream<Item = Result<Event<K>, watcher::Error>> + Send + 'static
where
    K: Resource<DynamicType = ()> + Clone + DeserializeOwned + Debug + Send + Sync + 'static,
{
    let api: Api<Lenient<K>> = Api::all(client);
    watch(api, config).filter_map(move |event| {
        let kind = K::kind(&()).to_string();
        let keep = |l: Lenient<K>, reporter: &Reporter| -> Option<K> {
            match l {
                Lenient::Parsed(k) => {
                    reporter.parsed(&kind, k.meta());
                    Some(k)
                }
                Lenient::Unparseable { ref error, .. } => {
                    let error = error.clone();
                    reporter.unparseable(&l, &error);
                    None
                }
            }
        };
        let out = match event {
            Err(e) => Some(Err(e)),
            Ok(Event::Init) => Some(Ok(Event::Init)),
            Ok(Event::InitDone) => Some(Ok(Event::InitDone)),
            Ok(Event::InitApply(l)) => keep(l, &reporter).map(|k| Ok(Event::InitApply(k))),
            Ok(Event::Apply(l)) => keep(l, &reporter).map(|k| Ok(Event::Apply(k))),
            Ok(Event::Delete(l)) => {
                reporter.deleted(&kind, l.meta());
                match l {
                    Lenient::Parsed(k) => Some(Ok(Event::Delete(k))),
                    Lenient::Unparseable { .. } => None,
                }
            }
        };
        futures::future::ready(out)
    })
}

/// Applied objects of `K` (for `Controller::watches_stream`), unparseable ones left out.
pub fn objects<K>(
    client: Client,
    config: watcher::Config,
    reporter: Reporter,
) -> impl Stream<Item = Result<K, watcher::Error>> + Send + 'static
where
    K: Resource<DynamicType = ()> + Clone + DeserializeOwned + Debug + Send + Sync + 'static,
{
    without_errors::<K>(
        events::<K>(client, config, reporter)
            .backoff(watch_backoff())
            .applied_objects(),
    )
}

/// Drops the watch errors from a trigger stream (after the backoff they drive), logging them.
///
/// kube's controller splits its trigger stream into objects and errors behind one peekable
/// stream; an error peeked by the objects' side is left for the errors' side without waking
/// it, and the controller could then stop polling its triggers until some other wake-up (a
/// requeue) came by. After a hub API server restart every hub watch yields `410 Gone`, and the
/// agency and hosted-system controllers saw nothing new for 60–120 s. The watcher itself
/// recovers from every error it yields (re-watch, or re-list), so the controller needs none.
pub fn without_errors<K: 'static + Send>(
    stream: impl Stream<Item = Result<K, watcher::Error>> + Send + 'static,
) -> impl Stream<Item = Result<K, watcher::Error>> + Send + 'static {
    stream.filter_map(|r| {
        futures::future::ready(match r {
            Ok(o) => Some(Ok(o)),
            Err(e) => {
                tracing::debug!(kind = std::any::type_name::<K>(), error = %e, "watch error (the watcher retries)");
                None
            }
        })
    })
}

/// A reflector (store and the stream that fills it, to be polled) of `K`, unparseable
/// objects left out. The stream is the controller's trigger stream: every applied object,
/// and after each (re-)list every listed object — those once the store holds the list (see
/// [`after_listing`]).
pub fn reflector<K>(
    client: Client,
    config: watcher::Config,
    reporter: Reporter,
) -> (Store<K>, impl Stream<Item = Result<K, watcher::Error>> + Send + 'static)
where
    K: Resource<DynamicType = ()> + Clone + DeserializeOwned + Debug + Send + Sync + 'static,
{
    let writer: Writer<K> = Writer::new(());
    let reader = writer.as_reader();
    let events = reflector::reflector(writer, events::<K>(client, config, reporter).backoff(watch_backoff()));
    let stream = without_errors::<K>(after_listing(events, reader.clone()));
    (reader, stream)
}

/// How many object references a shared watch holds for its slowest subscriber before it
/// waits (kube's controllers take their triggers at once, into an unbounded queue).
pub const SHARED_BUFFER: usize = 1024;

/// One watch of `K` shared by every controller that reads the kind (kube's shared
/// reflector): its store, `subscribers` trigger streams and the future that drives the
/// watch (spawn it; watch errors are retried by the watcher and logged at debug level).
///
/// Each controller used to watch the kinds it reads on its own: at a restart with 5,000
/// HostedSystems and 2,000 AgencyClouds, the hub streamed every system three times and every
/// agency three times, and the operator parsed each copy. A subscriber gets `Arc`s of the
/// store's objects (nothing is copied per subscriber) — every applied object, and after each
/// (re-)list every listed object once the store holds the whole list (as [`after_listing`]).
/// `index`, if given, is updated from the same events just before the store.
///
/// Every stream returned must be polled or dropped: one that is neither holds the others
/// back once [`SHARED_BUFFER`] references wait for it.
pub fn shared<K>(
    client: Client,
    config: watcher::Config,
    reporter: Reporter,
    subscribers: usize,
    index: Option<NsIndex>,
) -> (
    Store<K>,
    Vec<reflector::ReflectHandle<K>>,
    impl Future<Output = ()> + Send + 'static,
)
where
    K: Resource<DynamicType = ()> + Clone + DeserializeOwned + Debug + Send + Sync + 'static,
{
    let writer: Writer<K> = Writer::new_shared(SHARED_BUFFER, ());
    let reader = writer.as_reader();
    let handles = (0..subscribers).filter_map(|_| writer.subscribe()).collect();
    let events = events::<K>(client, config, reporter)
        .backoff(watch_backoff())
        .inspect(move |e| {
            if let (Some(index), Ok(e)) = (&index, e) {
                index.observe(e);
            }
        });
    let driver = reflector::reflector(writer, events).for_each(|e| {
        if let Err(e) = e {
            tracing::debug!(kind = std::any::type_name::<K>(), error = %e, "watch error (the watcher retries)");
        }
        futures::future::ready(())
    });
    (reader, handles, driver)
}

/// The names of a store's objects per namespace, kept from the same watch events as the
/// store ([`shared`]): what lives in a namespace without scanning every object (a scan of
/// 5,000 HostedSystems for each of 2,000 agencies and again for each of their events made a
/// restart quadratic).
#[derive(Clone, Default)]
pub struct NsIndex(Arc<std::sync::RwLock<NsMaps>>);

#[derive(Default)]
struct NsMaps {
    live: std::collections::HashMap<String, std::collections::BTreeSet<String>>,
    /// The (re-)list being received; replaces `live` when complete, as the store does.
    listing: Option<std::collections::HashMap<String, std::collections::BTreeSet<String>>>,
}

impl NsIndex {
    /// Applies one watch event.
    pub fn observe<K: Resource>(&self, event: &Event<K>) {
        type Map = std::collections::HashMap<String, std::collections::BTreeSet<String>>;
        fn key<K: Resource>(o: &K) -> Option<(String, String)> {
            Some((o.meta().namespace.clone()?, o.meta().name.clone()?))
        }
        fn insert<K: Resource>(m: &mut Map, o: &K) {
            if let Some((ns, name)) = key(o) {
                m.entry(ns).or_default().insert(name);
            }
        }
        // A poisoned lock still holds a valid index (nothing here panics midway).
        let mut m = self.0.write().unwrap_or_else(std::sync::PoisonError::into_inner);
        match event {
            Event::Init => m.listing = Some(Map::new()),
            Event::InitApply(o) => {
                if let Some(l) = m.listing.as_mut() {
                    insert(l, o);
                }
            }
            Event::InitDone => {
                if let Some(l) = m.listing.take() {
                    m.live = l;
                }
            }
            Event::Apply(o) => insert(&mut m.live, o),
            Event::Delete(o) => {
                if let Some((ns, name)) = key(o)
                    && let Some(names) = m.live.get_mut(&ns)
                {
                    names.remove(&name);
                    if names.is_empty() {
                        m.live.remove(&ns);
                    }
                }
            }
        }
    }

    /// References to the objects in `namespace`, sorted by name.
    pub fn refs<K: Resource<DynamicType = ()>>(&self, namespace: &str) -> Vec<reflector::ObjectRef<K>> {
        let m = self.0.read().unwrap_or_else(std::sync::PoisonError::into_inner);
        m.live
            .get(namespace)
            .map(|names| {
                names
                    .iter()
                    .map(|n| reflector::ObjectRef::new(n).within(namespace))
                    .collect()
            })
            .unwrap_or_default()
    }

    /// The objects of `store` in `namespace` (those the store holds), sorted by name.
    pub fn objects<K>(&self, store: &Store<K>, namespace: &str) -> Vec<Arc<K>>
    where
        K: Resource<DynamicType = ()> + Clone,
    {
        self.refs::<K>(namespace).iter().filter_map(|r| store.get(r)).collect()
    }
}

/// The objects of a reflector's events, the listed ones only once the list is complete.
///
/// kube's reflector store takes a (re-)list in whole when it ends (`InitDone`), while its
/// `applied_objects` passes each listed object on at once. A controller looks each trigger
/// up in the store, and drops one it does not find: an object created while a watch was
/// down (the hub's API server restarted) and seen first in the re-list was never
/// reconciled if the controller got to it before the list ended — likely with streamed
/// lists, where the list arrives object by object, possible with paged ones between pages.
/// Here the listed objects are passed on after `InitDone`, read back from the store one by
/// one (a list is not held twice).
fn after_listing<K>(
    events: impl Stream<Item = Result<Event<K>, watcher::Error>> + Send + 'static,
    store: Store<K>,
) -> impl Stream<Item = Result<K, watcher::Error>> + Send + 'static
where
    K: Resource<DynamicType = ()> + Clone + Send + Sync + 'static,
{
    use kube::runtime::reflector::ObjectRef;
    events
        .scan(Vec::<ObjectRef<K>>::new(), move |listed, event| {
            let out: futures::stream::BoxStream<'static, Result<K, watcher::Error>> = match event {
                Ok(Event::Init) => {
                    listed.clear();
                    futures::stream::empty().boxed()
                }
                Ok(Event::InitApply(o)) => {
                    listed.push(ObjectRef::from_obj(&o));
                    futures::stream::empty().boxed()
                }
                Ok(Event::InitDone) => {
                    let store = store.clone();
                    futures::stream::iter(std::mem::take(listed))
                        .filter_map(move |r| futures::future::ready(store.get(&r).map(|o| Ok((*o).clone()))))
                        .boxed()
                }
                Ok(Event::Apply(o)) => futures::stream::once(futures::future::ready(Ok(o))).boxed(),
                Ok(Event::Delete(_)) => futures::stream::empty().boxed(),
                Err(e) => futures::stream::once(futures::future::ready(Err(e))).boxed(),
            };
            futures::future::ready(Some(out))
        })
        .flatten()
}

#[cfg(test)]
mod tests {
    use super::*;
    use govcloud_api::AgencyCloud;
    use serde_json::json;

    #[test]
    fn the_namespace_index_follows_the_watch_events_and_takes_a_relist_whole() {
        use k8s_openapi::api::core::v1::ConfigMap;
        let cm = |ns: &str, n: &str| {
            let mut c = ConfigMap::default();
            c.metadata.name = Some(n.into());
            c.metadata.namespace = Some(ns.into());
            c
        };
        let names =
            |ix: &NsIndex, ns: &str| -> Vec<String> { ix.refs::<ConfigMap>(ns).into_iter().map(|r| r.name).collect() };
        let ix = NsIndex::default();
        ix.observe(&Event::<ConfigMap>::Init);
        ix.observe(&Event::InitApply(cm("a", "x")));
        ix.observe(&Event::InitApply(cm("a", "w")));
        // Not visible until the list is complete (as the store).
        assert!(names(&ix, "a").is_empty());
        ix.observe(&Event::<ConfigMap>::InitDone);
        assert_eq!(names(&ix, "a"), ["w", "x"]);
        ix.observe(&Event::Apply(cm("b", "y")));
        ix.observe(&Event::Apply(cm("b", "y")));
        ix.observe(&Event::Delete(cm("a", "x")));
        assert_eq!(names(&ix, "a"), ["w"]);
        assert_eq!(names(&ix, "b"), ["y"]);
        // A re-list replaces everything: what was deleted meanwhile is gone.
        ix.observe(&Event::<ConfigMap>::Init);
        ix.observe(&Event::InitApply(cm("b", "z")));
        assert_eq!(names(&ix, "a"), ["w"]);
        ix.observe(&Event::<ConfigMap>::InitDone);
        assert!(names(&ix, "a").is_empty());
        assert_eq!(names(&ix, "b"), ["z"]);
        // Objects of a store by namespace: only those the store holds.
        let mut writer: Writer<ConfigMap> = Writer::new(());
        writer.apply_watcher_event(&Event::Apply(cm("b", "z")));
        let store = writer.as_reader();
        ix.observe(&Event::Apply(cm("b", "not-in-store")));
        let objs: Vec<String> = ix
            .objects(&store, "b")
            .iter()
            .map(|o| kube::ResourceExt::name_any(&**o))
            .collect();
        assert_eq!(objs, ["z"]);
    }

    #[tokio::test]
    async fn listed_objects_are_passed_on_once_the_store_holds_the_list() {
        use k8s_openapi::api::core::v1::ConfigMap;
        use kube::runtime::reflector::ObjectRef;
        let cm = |n: &str| {
            let mut c = ConfigMap::default();
            c.metadata.name = Some(n.into());
            c.metadata.namespace = Some("ns".into());
            c
        };
        let events = vec![
            Ok(Event::Init),
            Ok(Event::InitApply(cm("a"))),
            Ok(Event::InitApply(cm("b"))),
            Ok(Event::InitDone),
            Ok(Event::Apply(cm("c"))),
            Ok(Event::Delete(cm("a"))),
            // A re-list, with an object created while the watch was down.
            Ok(Event::Init),
            Ok(Event::InitApply(cm("b"))),
            Ok(Event::InitApply(cm("new"))),
            Ok(Event::InitDone),
        ];
        let writer: Writer<ConfigMap> = Writer::new(());
        let store = writer.as_reader();
        let stream = after_listing(
            reflector::reflector(writer, futures::stream::iter(events)),
            store.clone(),
        );
        let mut stream = std::pin::pin!(stream);
        let mut seen = Vec::new();
        while let Some(Ok(o)) = stream.next().await {
            // Each trigger is in the store when the controller looks it up.
            assert!(
                store.get(&ObjectRef::from_obj(&o)).is_some(),
                "{:?} not in the store",
                o.metadata.name
            );
            seen.push(o.metadata.name.unwrap_or_default());
        }
        assert_eq!(seen, ["a", "b", "c", "b", "new"]);
    }

    #[test]
    fn only_a_refusal_of_streamed_lists_falls_back_to_paged_lists() {
        let status = |code: u16| kube::core::Status {
            code,
            ..Default::default()
        };
        let api = |code: u16| kube::Error::Api(Box::new(status(code)));
        for code in [400, 422] {
            assert!(streaming_refused(&watcher::Error::WatchStartFailed(api(code))));
            assert!(streaming_refused(&watcher::Error::WatchFailed(api(code))));
            assert!(streaming_refused(&watcher::Error::WatchError(Box::new(status(code)))));
        }
        // Gone, forbidden, unavailable: the watcher retries them as before.
        for code in [403, 410, 500, 503] {
            assert!(!streaming_refused(&watcher::Error::WatchStartFailed(api(code))));
            assert!(!streaming_refused(&watcher::Error::WatchError(Box::new(status(code)))));
        }
        assert!(!streaming_refused(&watcher::Error::NoResourceVersion));
    }

    #[test]
    fn a_bad_object_keeps_its_metadata_and_says_why() {
        let bad = json!({
            "apiVersion": "govcloud.io/v1alpha1", "kind": "AgencyCloud",
            "metadata": {"name": "old", "uid": "u1", "resourceVersion": "7"},
            "spec": {"securityLevel": "high"}
        });
        match parse::<AgencyCloud>(bad) {
            Lenient::Unparseable { meta, error } => {
                assert_eq!(meta.name.as_deref(), Some("old"));
                assert!(!error.is_empty());
            }
            Lenient::Parsed(_) => panic!("an AgencyCloud without a valid spec must not parse"),
        }
    }

    #[test]
    fn kubectls_copy_and_field_sets_are_not_kept() {
        let applied = json!({
            "apiVersion": "govcloud.io/v1alpha1", "kind": "AgencyCloud",
            "metadata": {"name": "mof", "annotations": {LAST_APPLIED: "{\"big\": true}", "keep": "me"},
                "managedFields": [{"manager": "kubectl", "operation": "Update"}]},
            "spec": {"securityLevel": "high"}
        });
        let Lenient::Unparseable { meta, .. } = parse::<AgencyCloud>(applied) else {
            panic!("not a valid AgencyCloud");
        };
        assert!(meta.managed_fields.is_none());
        let annotations = meta.annotations.unwrap_or_default();
        assert_eq!(annotations.len(), 1, "{annotations:?}");
        assert_eq!(annotations.get("keep").map(String::as_str), Some("me"));
        let only: Lenient<kube::api::DynamicObject> = parse(json!({
            "apiVersion": "v1", "kind": "X", "metadata": {"name": "x", "annotations": {LAST_APPLIED: "{}"}}
        }));
        let Lenient::Parsed(o) = only else {
            panic!("a DynamicObject always parses")
        };
        assert!(o.metadata.annotations.is_none());
    }

    #[test]
    fn a_list_with_one_bad_object_still_yields_the_good_ones() {
        let good: serde_json::Value =
            serde_yaml::from_str(include_str!("../../../examples/agencies/mof-internal-l3.yaml")).unwrap_or_default();
        let list = json!({
            "apiVersion": "govcloud.io/v1alpha1", "kind": "AgencyCloudList", "metadata": {},
            "items": [good, {"apiVersion": "govcloud.io/v1alpha1", "kind": "AgencyCloud",
                             "metadata": {"name": "bad"}, "spec": {"zone": 42}}]
        });
        let parsed: kube::core::ObjectList<Lenient<AgencyCloud>> =
            serde_json::from_value(list).unwrap_or_else(|e| panic!("a lenient list parses: {e}"));
        let kinds: Vec<bool> = parsed.items.iter().map(|l| matches!(l, Lenient::Parsed(_))).collect();
        assert_eq!(kinds, vec![true, false]);
        // The typed list fails as a whole: what this module is for.
        let strict: Result<kube::core::ObjectList<AgencyCloud>, _> = serde_json::from_value(json!({
            "apiVersion": "govcloud.io/v1alpha1", "kind": "AgencyCloudList", "metadata": {},
            "items": [{"apiVersion": "govcloud.io/v1alpha1", "kind": "AgencyCloud", "metadata": {"name": "bad"}, "spec": {"zone": 42}}]
        }));
        assert!(strict.is_err());
    }
}

//! How the plugin writes: its field manager and the `-o` forms of an object.

use anyhow::Result;
use serde::Serialize;

/// Field manager of the plugin's writes.
pub const FIELD_MANAGER: &str = "kubectl-govcloud";

/// How an object is printed with `-o`.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum ObjectFormat {
    /// YAML, as `kubectl get -o yaml`.
    Yaml,
    /// JSON.
    Json,
    /// `kind.group/name`.
    Name,
}

/// Prints an object in `format`, without `managedFields` (like kubectl).
pub fn print_object<K: kube::Resource + Serialize>(obj: &K, format: ObjectFormat) -> Result<()>
where
    K::DynamicType: Default,
{
    let mut value = serde_json::to_value(obj)?;
    if let Some(meta) = value.get_mut("metadata").and_then(|m| m.as_object_mut()) {
        meta.remove("managedFields");
    }
    match format {
        ObjectFormat::Yaml => print!("{}", serde_yaml::to_string(&value)?),
        ObjectFormat::Json => println!("{}", serde_json::to_string_pretty(&value)?),
        ObjectFormat::Name => {
            let dt = K::DynamicType::default();
            println!(
                "{}.{}/{}",
                K::kind(&dt).to_lowercase(),
                K::group(&dt),
                obj.meta().name.as_deref().unwrap_or_default()
            );
        }
    }
    Ok(())
}

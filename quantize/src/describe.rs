//! Human-readable parameters of each op kind, for `mote inspect`.

use mote_runtime::OpKind;

/// `name=value` text for the parameter bytes of an op of `kind`.
pub fn params(kind: OpKind, bytes: &[u8]) -> String {
    let _ = kind;
    format!("{} param bytes", bytes.len())
}

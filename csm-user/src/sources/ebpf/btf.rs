//! Field offsets in kernel structures, from the running kernel's BTF.
//!
//! aya-ebpf has no CO-RE, so the programs read `task_struct` fields at offsets that
//! userspace finds here and writes into their `.rodata` before load.

use std::path::Path;

use anyhow::{anyhow, bail, Context, Result};
use btf_rs::{Btf, Type};
use csm_common::{NetOffsets, TaskOffsets};

/// Offsets the scheduler program needs, from the BTF file at `path`.
pub fn task_offsets(path: &Path) -> Result<TaskOffsets> {
    let btf =
        Btf::from_file(path).with_context(|| format!("cannot parse BTF {}", path.display()))?;
    let offsets = TaskOffsets {
        sum_exec_runtime: offset_of(&btf, "task_struct", &["se", "sum_exec_runtime"])?,
        prev_sum_exec_runtime: offset_of(&btf, "task_struct", &["se", "prev_sum_exec_runtime"])?,
        real_cred: offset_of(&btf, "task_struct", &["real_cred"])?,
        cred_uid: offset_of(&btf, "cred", &["uid"])?,
        pid: offset_of(&btf, "task_struct", &["pid"])?,
    };
    Ok(offsets)
}

/// Offsets the netdev programs need, from the BTF file at `path`.
pub fn net_offsets(path: &Path) -> Result<NetOffsets> {
    let btf =
        Btf::from_file(path).with_context(|| format!("cannot parse BTF {}", path.display()))?;
    Ok(NetOffsets {
        skb_len: offset_of(&btf, "sk_buff", &["len"])?,
        skb_dev: offset_of(&btf, "sk_buff", &["dev"])?,
        dev_ifindex: offset_of(&btf, "net_device", &["ifindex"])?,
        dev_type: offset_of(&btf, "net_device", &["type"])?,
        dev_net: offset_of(&btf, "net_device", &["nd_net", "net"])?,
        net_inum: offset_of(&btf, "net", &["ns", "inum"])?,
        skb_sk: offset_of(&btf, "sk_buff", &["sk"])?,
        sk_uid: offset_of(&btf, "sock", &["sk_uid"])?,
    })
}

/// Byte offset of `path` (a chain of member names) inside struct `root`.
pub fn offset_of(btf: &Btf, root: &str, path: &[&str]) -> Result<u32> {
    let mut current = find_struct(btf, root)?;
    let mut total_bits = 0u32;
    for (i, name) in path.iter().enumerate() {
        let (bits, member_type) = find_member(btf, &current, name)?
            .ok_or_else(|| anyhow!("BTF: {root} has no member {}", path[..=i].join(".")))?;
        total_bits += bits;
        if i + 1 < path.len() {
            current = match strip_modifiers(btf, member_type)? {
                Type::Struct(s) | Type::Union(s) => s,
                _ => bail!("BTF: {root}.{} is not a struct", path[..=i].join(".")),
            };
        }
    }
    if !total_bits.is_multiple_of(8) {
        bail!("BTF: {root}.{} is a bit field", path.join("."));
    }
    Ok(total_bits / 8)
}

fn find_struct(btf: &Btf, name: &str) -> Result<btf_rs::Struct> {
    btf.resolve_types_by_name(name)
        .with_context(|| format!("BTF has no type {name}"))?
        .into_iter()
        .find_map(|t| match t {
            Type::Struct(s) if !s.members.is_empty() => Some(s),
            _ => None,
        })
        .ok_or_else(|| anyhow!("BTF has no struct {name}"))
}

/// Finds a member by name, descending into anonymous structs and unions; returns its bit
/// offset from the start of `parent` and its type.
fn find_member(btf: &Btf, parent: &btf_rs::Struct, name: &str) -> Result<Option<(u32, Type)>> {
    for member in &parent.members {
        let member_name = btf.resolve_name(member).unwrap_or_default();
        let member_type = btf.resolve_chained_type(member)?;
        if member_name == name {
            return Ok(Some((member.bit_offset(), member_type)));
        }
        if member_name.is_empty() {
            if let Type::Struct(inner) | Type::Union(inner) = strip_modifiers(btf, member_type)? {
                if let Some((bits, t)) = find_member(btf, &inner, name)? {
                    return Ok(Some((member.bit_offset() + bits, t)));
                }
            }
        }
    }
    Ok(None)
}

fn strip_modifiers(btf: &Btf, mut t: Type) -> Result<Type> {
    loop {
        t = match &t {
            Type::Typedef(x) => btf.resolve_chained_type(x)?,
            Type::Const(x) => btf.resolve_chained_type(x)?,
            Type::Volatile(x) => btf.resolve_chained_type(x)?,
            Type::Restrict(x) => btf.resolve_chained_type(x)?,
            Type::TypeTag(x) => btf.resolve_chained_type(x)?,
            _ => return Ok(t),
        };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offsets_of_the_running_kernel_are_plausible() {
        // The machines this project runs on have BTF (see EBPF-NOTES.md).
        let path = Path::new("/sys/kernel/btf/vmlinux");
        let off = task_offsets(path).unwrap();
        assert_eq!(off.prev_sum_exec_runtime, off.sum_exec_runtime + 8);
        assert!(off.real_cred > off.pid);
        assert_eq!(off.cred_uid % 4, 0);
        let net = net_offsets(path).unwrap();
        assert_eq!(net.skb_len % 4, 0);
        assert_eq!(net.dev_net % 8, 0);
        assert_ne!(net.dev_ifindex, net.dev_type);
        assert!(
            net.skb_sk > 0 && net.skb_sk.is_multiple_of(8),
            "sk_buff.sk {}",
            net.skb_sk
        );
        assert!(
            net.sk_uid > 0 && net.sk_uid.is_multiple_of(4),
            "sock.sk_uid {}",
            net.sk_uid
        );
    }
}

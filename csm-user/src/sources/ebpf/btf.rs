//! What csm needs from the running kernel's BTF: field offsets in kernel structures and
//! the type ids of the tp_btf attach points.
//!
//! aya-ebpf has no CO-RE, so the programs read `task_struct` fields at offsets that
//! userspace finds here and writes into their `.rodata` before load.
//!
//! The vmlinux BTF (5.5 MB here) is read once and scanned in place: an index of where each
//! type's record starts, names looked up in the string section as they are needed. Parsing
//! it into full type graphs (btf-rs for the offsets, aya for each tp_btf load and for the
//! loader's CO-RE target) took the daemon's start-up peak to 46 MB for figures that fit in
//! a few dozen bytes. aya's `BtfTracePoint::load` still wants an `aya::Btf`: it looks the
//! `btf_trace_<tracepoint>` typedef up by name, so [`AttachTargets::stand_in`] builds one
//! whose only named types are those typedefs, at their vmlinux ids. (aya's
//! `EbpfLoader::new` still parses the whole vmlinux BTF once, whatever `.btf()` says
//! after: the loader runs it with nothing else of the BTF alive.)

use std::fs::File;
use std::io::Read;
use std::path::Path;

use anyhow::{anyhow, bail, ensure, Context, Result};
use aya_obj::btf::BtfKind;
use csm_common::{MemOffsets, NetOffsets, TaskOffsets, MEM_MAX_CPUS};

/// More than any vmlinux BTF (5.5 MB on 6.18 with every driver built in).
const MAX_BTF_BYTES: u64 = 64 << 20;
const HEADER_LEN: usize = 24;
const MAGIC: u16 = 0xeb9f;

// The kinds of BTF type records (`BTF_KIND_*`), as aya's BTF parser names them.
const KIND_INT: u32 = BtfKind::Int as u32;
const KIND_ARRAY: u32 = BtfKind::Array as u32;
const KIND_STRUCT: u32 = BtfKind::Struct as u32;
const KIND_UNION: u32 = BtfKind::Union as u32;
const KIND_ENUM: u32 = BtfKind::Enum as u32;
const KIND_TYPEDEF: u32 = BtfKind::Typedef as u32;
const KIND_VOLATILE: u32 = BtfKind::Volatile as u32;
const KIND_CONST: u32 = BtfKind::Const as u32;
const KIND_RESTRICT: u32 = BtfKind::Restrict as u32;
const KIND_FUNC: u32 = BtfKind::Func as u32;
const KIND_FUNC_PROTO: u32 = BtfKind::FuncProto as u32;
const KIND_VAR: u32 = BtfKind::Var as u32;
const KIND_DATASEC: u32 = BtfKind::DataSec as u32;
const KIND_DECL_TAG: u32 = BtfKind::DeclTag as u32;
const KIND_TYPE_TAG: u32 = BtfKind::TypeTag as u32;
const KIND_ENUM64: u32 = BtfKind::Enum64 as u32;

/// The kernel's BTF, scanned but not parsed.
pub struct KernelBtf {
    data: Vec<u8>,
    /// Byte offset (in `data`) of each type's record; index = type id, id 0 is void.
    types: Vec<u32>,
    strings: std::ops::Range<usize>,
}

/// One member of a struct or union.
struct Member {
    name: u32,
    type_id: u32,
    bit_offset: u32,
}

impl KernelBtf {
    /// Reads and indexes the BTF file at `path` (read at most [`MAX_BTF_BYTES`]).
    pub fn read(path: &Path) -> Result<KernelBtf> {
        let file = File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
        let mut data = Vec::new();
        file.take(MAX_BTF_BYTES + 1)
            .read_to_end(&mut data)
            .with_context(|| format!("cannot read {}", path.display()))?;
        ensure!(
            data.len() as u64 <= MAX_BTF_BYTES,
            "{} is larger than {MAX_BTF_BYTES} bytes",
            path.display()
        );
        KernelBtf::parse(data).with_context(|| format!("cannot parse BTF {}", path.display()))
    }

    pub fn parse(data: Vec<u8>) -> Result<KernelBtf> {
        ensure!(data.len() >= HEADER_LEN, "shorter than a BTF header");
        let u16_at = |at: usize| u16::from_le_bytes([data[at], data[at + 1]]);
        ensure!(
            u16_at(0) == MAGIC,
            "not little-endian BTF (magic {:#06x})",
            u16_at(0)
        );
        let header = |i: usize| read_u32(&data, 4 + 4 * i);
        let (hdr_len, type_off, type_len, str_off, str_len) =
            (header(0)?, header(1)?, header(2)?, header(3)?, header(4)?);
        let section = |off: u32, len: u32| -> Result<std::ops::Range<usize>> {
            let start = (hdr_len as usize)
                .checked_add(off as usize)
                .context("section offset overflows")?;
            let end = start
                .checked_add(len as usize)
                .filter(|&end| end <= data.len())
                .context("section runs past the end of the file")?;
            Ok(start..end)
        };
        let type_section = section(type_off, type_len)?;
        let strings = section(str_off, str_len)?;
        let mut types = vec![0u32]; // id 0: void
        let mut at = type_section.start;
        while at < type_section.end {
            ensure!(u32::try_from(at).is_ok(), "type section beyond 4 GiB");
            types.push(at as u32);
            at = at
                .checked_add(record_len(&data, at)?)
                .context("type record overflows")?;
        }
        ensure!(at == type_section.end, "the last type record is truncated");
        Ok(KernelBtf {
            data,
            types,
            strings,
        })
    }

    fn word(&self, at: usize) -> u32 {
        // In bounds: every record was measured against the section when indexed.
        read_u32(&self.data, at).unwrap_or(0)
    }

    fn kind(&self, id: u32) -> u32 {
        (self.word(self.types[id as usize] as usize + 4) >> 24) & 0x1f
    }

    fn name(&self, name_off: u32) -> &[u8] {
        let start = self.strings.start + name_off as usize;
        if start >= self.strings.end {
            return b"";
        }
        let rest = &self.data[start..self.strings.end];
        &rest[..rest.iter().position(|&b| b == 0).unwrap_or(rest.len())]
    }

    fn type_name(&self, id: u32) -> &[u8] {
        self.name(self.word(self.types[id as usize] as usize))
    }

    /// The type a modifier or typedef refers to.
    fn referred(&self, id: u32) -> u32 {
        self.word(self.types[id as usize] as usize + 8)
    }

    fn checked(&self, id: u32) -> Result<u32> {
        ensure!((id as usize) < self.types.len(), "BTF: no type id {id}");
        Ok(id)
    }

    fn members(&self, id: u32) -> impl Iterator<Item = Member> + '_ {
        let at = self.types[id as usize] as usize;
        let info = self.word(at + 4);
        let (vlen, kind_flag) = (info & 0xffff, info >> 31 == 1);
        (0..vlen as usize).map(move |i| {
            let m = at + 12 + 12 * i;
            let offset = self.word(m + 8);
            Member {
                name: self.word(m),
                type_id: self.word(m + 4),
                // With kind_flag, the top 8 bits are a bit field's size.
                bit_offset: if kind_flag {
                    offset & 0xff_ffff
                } else {
                    offset
                },
            }
        })
    }

    fn find_struct(&self, name: &str) -> Result<u32> {
        (1..self.types.len() as u32)
            .find(|&id| {
                self.kind(id) == KIND_STRUCT
                    && self.type_name(id) == name.as_bytes()
                    && self.word(self.types[id as usize] as usize + 4) & 0xffff != 0
            })
            .ok_or_else(|| anyhow!("BTF has no struct {name}"))
    }

    /// Id of the typedef called `name`.
    fn typedef_id(&self, name: &str) -> Option<u32> {
        (1..self.types.len() as u32)
            .find(|&id| self.kind(id) == KIND_TYPEDEF && self.type_name(id) == name.as_bytes())
    }

    fn strip_modifiers(&self, mut id: u32) -> Result<u32> {
        for _ in 0..32 {
            id = self.checked(id)?;
            match self.kind(id) {
                KIND_TYPEDEF | KIND_VOLATILE | KIND_CONST | KIND_RESTRICT | KIND_TYPE_TAG => {
                    id = self.referred(id)
                }
                _ => return Ok(id),
            }
        }
        bail!("BTF: a chain of more than 32 modifiers")
    }

    /// Finds a member by name, descending into anonymous structs and unions; returns its
    /// bit offset from the start of `parent` and its type.
    fn find_member(&self, parent: u32, name: &str, depth: u32) -> Result<Option<(u32, u32)>> {
        ensure!(
            depth < 32,
            "BTF: anonymous members nested more than 32 deep"
        );
        for member in self.members(parent) {
            let member_name = self.name(member.name);
            if member_name == name.as_bytes() {
                return Ok(Some((member.bit_offset, member.type_id)));
            }
            if member_name.is_empty() {
                let inner = self.strip_modifiers(member.type_id)?;
                if matches!(self.kind(inner), KIND_STRUCT | KIND_UNION) {
                    if let Some((bits, t)) = self.find_member(inner, name, depth + 1)? {
                        return Ok(Some((member.bit_offset + bits, t)));
                    }
                }
            }
        }
        Ok(None)
    }

    /// Byte offset of `path` (a chain of member names) inside struct `root`.
    pub fn offset_of(&self, root: &str, path: &[&str]) -> Result<u32> {
        let mut current = self.find_struct(root)?;
        let mut total_bits = 0u32;
        for (i, name) in path.iter().enumerate() {
            let (bits, member_type) = self
                .find_member(current, name, 0)?
                .ok_or_else(|| anyhow!("BTF: {root} has no member {}", path[..=i].join(".")))?;
            total_bits += bits;
            if i + 1 < path.len() {
                current = self.strip_modifiers(member_type)?;
                if !matches!(self.kind(current), KIND_STRUCT | KIND_UNION) {
                    bail!("BTF: {root}.{} is not a struct", path[..=i].join("."));
                }
            }
        }
        if !total_bits.is_multiple_of(8) {
            bail!("BTF: {root}.{} is a bit field", path.join("."));
        }
        Ok(total_bits / 8)
    }

    /// The vmlinux type id of the typedef `btf_trace_<tracepoint>` of each tracepoint:
    /// what `BtfTracePoint::load` attaches to.
    pub fn attach_targets(&self, tracepoints: &[&'static str]) -> Result<AttachTargets> {
        let mut ids = Vec::new();
        for &tracepoint in tracepoints {
            let name = format!("btf_trace_{tracepoint}");
            let id = self
                .typedef_id(&name)
                .with_context(|| format!("BTF has no typedef {name}"))?;
            ids.push((name, id, KIND_TYPEDEF));
        }
        Ok(AttachTargets(ids))
    }

    /// Adds the function `bpf_iter_<target>` (what `Iter::load` attaches to; kernels
    /// before 5.8 have no iterators).
    pub fn add_iterator(&self, targets: &mut AttachTargets, target: &str) -> Result<()> {
        let name = format!("bpf_iter_{target}");
        let id = (1..self.types.len() as u32)
            .find(|&id| self.kind(id) == KIND_FUNC && self.type_name(id) == name.as_bytes())
            .with_context(|| format!("BTF has no function {name} (no task iterator)"))?;
        targets.0.push((name, id, KIND_FUNC));
        Ok(())
    }

    /// Size in bytes of the struct `name`.
    fn struct_size(&self, name: &str) -> Result<u32> {
        let id = self.find_struct(name)?;
        Ok(self.word(self.types[id as usize] as usize + 8))
    }

    /// The type id of the elements (modifiers stripped) of the array member `member` of
    /// struct `root` (`None` when the member is not an array).
    fn array_element(&self, root: &str, member: &str) -> Result<Option<u32>> {
        let parent = self.find_struct(root)?;
        let (_, type_id) = self
            .find_member(parent, member, 0)?
            .ok_or_else(|| anyhow!("BTF: {root} has no member {member}"))?;
        let array = self.strip_modifiers(type_id)?;
        if self.kind(array) != KIND_ARRAY {
            return Ok(None);
        }
        // struct btf_array { type, index_type, nelems } follows the 12-byte header.
        let element = self.strip_modifiers(self.word(self.types[array as usize] as usize + 12))?;
        Ok(Some(element))
    }

    /// Size in bytes of the elements of the array member `member` of struct `root`
    /// (`None` when the member is not an array).
    fn array_element_size(&self, root: &str, member: &str) -> Result<Option<u32>> {
        let Some(element) = self.array_element(root, member)? else {
            return Ok(None);
        };
        // INT, STRUCT and UNION records keep their size where a reference keeps its type.
        ensure!(
            matches!(self.kind(element), KIND_STRUCT | KIND_UNION | KIND_INT),
            "BTF: the elements of {root}.{member} have no size of their own"
        );
        Ok(Some(self.referred(element)))
    }

    /// The struct an array member's elements are, by name (`None` when the member is
    /// not an array of structs).
    fn array_element_struct(&self, root: &str, member: &str) -> Result<Option<&[u8]>> {
        Ok(self
            .array_element(root, member)?
            .filter(|&element| self.kind(element) == KIND_STRUCT)
            .map(|element| self.type_name(element)))
    }
}

/// Type ids of the attach points (tp_btf typedefs, iterator functions), kept once the
/// kernel's BTF is dropped.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AttachTargets(Vec<(String, u32, u32)>);

impl AttachTargets {
    /// An `aya::Btf` for `BtfTracePoint::load` and `Iter::load`: each attach point (the
    /// typedef `btf_trace_<tracepoint>`, the function `bpf_iter_<target>`) at its vmlinux
    /// id, every other id a nameless `const void` (12 bytes each in the blob aya parses,
    /// instead of the whole kernel's types).
    pub fn stand_in(&self) -> Result<aya::Btf> {
        let mut strings = vec![0u8];
        let mut named = Vec::new();
        for (name, id, kind) in &self.0 {
            named.push((*id, strings.len() as u32, *kind));
            strings.extend_from_slice(name.as_bytes());
            strings.push(0);
        }
        let last = named.iter().map(|&(id, _, _)| id).max().unwrap_or(0);
        let mut type_section = Vec::with_capacity(12 * last as usize);
        for id in 1..=last {
            let (name_off, kind) = named
                .iter()
                .find(|&&(named_id, _, _)| named_id == id)
                .map_or((0, KIND_CONST), |&(_, off, kind)| (off, kind));
            for word in [name_off, kind << 24, 0] {
                type_section.extend_from_slice(&word.to_le_bytes());
            }
        }
        let mut blob = Vec::with_capacity(HEADER_LEN + type_section.len() + strings.len());
        blob.extend_from_slice(&MAGIC.to_le_bytes());
        blob.extend_from_slice(&[1, 0]); // version 1, no flags
        let type_len = type_section.len() as u32;
        for word in [
            HEADER_LEN as u32,
            0,
            type_len,
            type_len,
            strings.len() as u32,
        ] {
            blob.extend_from_slice(&word.to_le_bytes());
        }
        blob.extend_from_slice(&type_section);
        drop(type_section);
        blob.extend_from_slice(&strings);
        aya::Btf::parse(&blob, aya::Endianness::Little)
            .map_err(|err| anyhow!("the stand-in BTF of the attach points does not parse: {err}"))
    }
}

fn read_u32(data: &[u8], at: usize) -> Result<u32> {
    let bytes = data
        .get(at..at + 4)
        .context("BTF: a record runs past the end of the file")?;
    Ok(u32::from_le_bytes(bytes.try_into().expect("4 bytes")))
}

/// Length of the type record at `at`: 12 bytes and what its kind appends.
fn record_len(data: &[u8], at: usize) -> Result<usize> {
    let info = read_u32(data, at + 4)?;
    let vlen = (info & 0xffff) as usize;
    let extra = match (info >> 24) & 0x1f {
        KIND_INT | KIND_VAR | KIND_DECL_TAG => 4,
        KIND_ARRAY => 12,
        KIND_STRUCT | KIND_UNION | KIND_DATASEC | KIND_ENUM64 => 12 * vlen,
        KIND_ENUM | KIND_FUNC_PROTO => 8 * vlen,
        kind @ 20.. => bail!("BTF: unknown kind {kind} at byte {at}"),
        _ => 0,
    };
    let len = 12 + extra;
    ensure!(
        at + len <= data.len(),
        "BTF: the record at byte {at} runs past the end of the file"
    );
    Ok(len)
}

/// Offsets the scheduler program needs.
pub fn task_offsets(btf: &KernelBtf) -> Result<TaskOffsets> {
    Ok(TaskOffsets {
        sum_exec_runtime: btf.offset_of("task_struct", &["se", "sum_exec_runtime"])?,
        prev_sum_exec_runtime: btf.offset_of("task_struct", &["se", "prev_sum_exec_runtime"])?,
        exec_start: btf.offset_of("task_struct", &["se", "exec_start"])?,
        real_cred: btf.offset_of("task_struct", &["real_cred"])?,
        cred_uid: btf.offset_of("cred", &["uid"])?,
        pid: btf.offset_of("task_struct", &["pid"])?,
    })
}

/// Offsets the memory iterator needs, for either layout of `mm_struct.rss_stat`:
///
/// - Linux 6.2 and later: an array of `struct percpu_counter`, whose per-CPU parts the
///   iterator adds as /proc does (`get_mm_counter_sum`);
/// - before 6.2: `struct mm_rss_stat { atomic_long_t count[NR_MM_COUNTERS]; }`. There
///   /proc/<pid>/status shows `get_mm_counter`: the atomic alone, clamped at 0; the
///   per-thread caches (`task_struct.rss_stat`, folded in every 64 faults and at exit under
///   SPLIT_RSS_COUNTING) are not in it, so the iterator reads the atomics alone too
///   (`atomic_counters`: no per-CPU parts, so the program never reaches
///   `bpf_map_lookup_percpu_elem`, a 5.19 helper) and the figures equal /proc's.
pub fn mem_offsets(btf: &KernelBtf, nr_cpus: u32) -> Result<MemOffsets> {
    ensure!(
        (1..=MEM_MAX_CPUS).contains(&nr_cpus),
        "{nr_cpus} possible CPUs: the memory iterator adds at most {MEM_MAX_CPUS}"
    );
    let common = MemOffsets {
        task_pid: btf.offset_of("task_struct", &["pid"])?,
        task_tgid: btf.offset_of("task_struct", &["tgid"])?,
        task_flags: btf.offset_of("task_struct", &["flags"])?,
        task_mm: btf.offset_of("task_struct", &["mm"])?,
        task_real_cred: btf.offset_of("task_struct", &["real_cred"])?,
        cred_uid: btf.offset_of("cred", &["uid"])?,
        array_pptrs: btf.offset_of("bpf_array", &["pptrs"])?,
        ..MemOffsets::default()
    };
    if btf.array_element_struct("mm_struct", "rss_stat")? == Some(b"percpu_counter") {
        return Ok(MemOffsets {
            mm_rss_stat: btf.offset_of("mm_struct", &["rss_stat"])?,
            counter_size: btf.struct_size("percpu_counter")?,
            counter_count: btf.offset_of("percpu_counter", &["count"])?,
            counter_counters: btf.offset_of("percpu_counter", &["counters"])?,
            nr_cpus,
            ..common
        });
    }
    let atomic_size = btf.array_element_size("mm_rss_stat", "count")?.context(
        "mm_struct.rss_stat is neither an array of percpu_counter (6.2+) nor a \
             struct mm_rss_stat with an array count (before 6.2)",
    )?;
    ensure!(
        atomic_size == 8,
        "mm_rss_stat.count holds {atomic_size}-byte elements, not atomic_long_t"
    );
    Ok(MemOffsets {
        mm_rss_stat: btf.offset_of("mm_struct", &["rss_stat", "count"])?,
        counter_size: atomic_size,
        nr_cpus: 0,
        atomic_counters: 1,
        ..common
    })
}

/// Offsets the netdev programs need.
pub fn net_offsets(btf: &KernelBtf) -> Result<NetOffsets> {
    Ok(NetOffsets {
        skb_len: btf.offset_of("sk_buff", &["len"])?,
        skb_dev: btf.offset_of("sk_buff", &["dev"])?,
        dev_ifindex: btf.offset_of("net_device", &["ifindex"])?,
        dev_type: btf.offset_of("net_device", &["type"])?,
        dev_net: btf.offset_of("net_device", &["nd_net", "net"])?,
        net_inum: btf.offset_of("net", &["ns", "inum"])?,
        skb_sk: btf.offset_of("sk_buff", &["sk"])?,
        sk_uid: btf.offset_of("sock", &["sk_uid"])?,
        net_user_ns: btf.offset_of("net", &["user_ns"])?,
        // kuid_t is a one-member struct: its value is at the member's own offset.
        userns_owner: btf.offset_of("user_namespace", &["owner"])?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const VMLINUX: &str = "/sys/kernel/btf/vmlinux";

    #[test]
    fn offsets_of_the_running_kernel_are_plausible() {
        // The machines this project runs on have BTF (see EBPF-NOTES.md).
        let btf = KernelBtf::read(Path::new(VMLINUX)).unwrap();
        let off = task_offsets(&btf).unwrap();
        assert_eq!(off.prev_sum_exec_runtime, off.sum_exec_runtime + 8);
        assert_eq!(off.exec_start, off.sum_exec_runtime - 8);
        assert!(off.real_cred > off.pid);
        assert_eq!(off.cred_uid % 4, 0);
        let net = net_offsets(&btf).unwrap();
        assert_eq!(net.skb_len % 4, 0);
        assert_eq!(net.dev_net % 8, 0);
        assert_ne!(net.dev_ifindex, net.dev_type);
        assert!(net.net_user_ns > 0 && net.net_user_ns.is_multiple_of(8));
        assert!(net.userns_owner > 0 && net.userns_owner.is_multiple_of(4));
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

    /// The scanner against a full parse (aya's): the same offsets, the same typedef ids.
    #[test]
    fn agrees_with_a_full_parse() {
        let full = aya::Btf::from_sys_fs().unwrap();
        let btf = KernelBtf::read(Path::new(VMLINUX)).unwrap();
        let tracepoints = ["sched_switch", "net_dev_xmit", "netif_receive_skb"];
        let stand_in = btf
            .attach_targets(&tracepoints)
            .unwrap()
            .stand_in()
            .unwrap();
        for tracepoint in tracepoints {
            let name = format!("btf_trace_{tracepoint}");
            let kind = aya_obj::btf::BtfKind::Typedef;
            assert_eq!(
                stand_in.id_by_type_name_kind(&name, kind).unwrap(),
                full.id_by_type_name_kind(&name, kind).unwrap(),
                "{name}"
            );
        }
        // Same members as the kernel headers put them: se.sum_exec_runtime is a u64 in
        // struct sched_entity, which task_struct embeds.
        let se = btf.offset_of("task_struct", &["se"]).unwrap();
        let runtime = btf
            .offset_of("sched_entity", &["sum_exec_runtime"])
            .unwrap();
        assert_eq!(
            btf.offset_of("task_struct", &["se", "sum_exec_runtime"])
                .unwrap(),
            se + runtime
        );
    }

    /// Byte offset of a member path by btf-rs's full parse (what csm used before).
    fn full_parse_offset(btf: &btf_rs::Btf, root: &str, path: &[&str]) -> u32 {
        use btf_rs::Type;
        let strip = |mut t: Type| loop {
            t = match &t {
                Type::Typedef(x) => btf.resolve_chained_type(x).unwrap(),
                Type::Const(x) => btf.resolve_chained_type(x).unwrap(),
                Type::Volatile(x) => btf.resolve_chained_type(x).unwrap(),
                _ => return t,
            };
        };
        fn find(btf: &btf_rs::Btf, s: &btf_rs::Struct, name: &str) -> Option<(u32, Type)> {
            for m in &s.members {
                let t = btf.resolve_chained_type(m).unwrap();
                let n = btf.resolve_name(m).unwrap_or_default();
                if n == name {
                    return Some((m.bit_offset(), t));
                }
                if n.is_empty() {
                    if let Type::Struct(i) | Type::Union(i) = &t {
                        if let Some((b, t)) = find(btf, i, name) {
                            return Some((m.bit_offset() + b, t));
                        }
                    }
                }
            }
            None
        }
        let mut current = btf
            .resolve_types_by_name(root)
            .unwrap()
            .into_iter()
            .find_map(|t| match t {
                Type::Struct(s) if !s.members.is_empty() => Some(s),
                _ => None,
            })
            .unwrap();
        let mut bits = 0;
        for name in path {
            let (b, t) = find(btf, &current, name).unwrap();
            bits += b;
            if let Type::Struct(s) | Type::Union(s) = strip(t) {
                current = s;
            }
        }
        bits / 8
    }

    #[test]
    fn offsets_equal_a_full_parse() {
        let full = btf_rs::Btf::from_file(VMLINUX).unwrap();
        let btf = KernelBtf::read(Path::new(VMLINUX)).unwrap();
        for (root, path) in [
            ("task_struct", &["se", "sum_exec_runtime"][..]),
            ("task_struct", &["se", "prev_sum_exec_runtime"]),
            ("task_struct", &["se", "exec_start"]),
            ("task_struct", &["real_cred"]),
            ("task_struct", &["pid"]),
            ("cred", &["uid"]),
            ("sk_buff", &["len"]),
            ("sk_buff", &["dev"]),
            ("net_device", &["ifindex"]),
            ("net_device", &["type"]),
            ("net_device", &["nd_net", "net"]),
            ("net", &["ns", "inum"]),
        ] {
            assert_eq!(
                btf.offset_of(root, path).unwrap(),
                full_parse_offset(&full, root, path),
                "{root}.{}",
                path.join(".")
            );
        }
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        assert!(KernelBtf::parse(Vec::new()).is_err());
        assert!(KernelBtf::parse(vec![0u8; 100]).is_err());
        // A valid header whose type section claims more than the file holds.
        let mut data = vec![0x9f, 0xeb, 1, 0];
        for word in [24u32, 0, 1000, 1000, 10] {
            data.extend_from_slice(&word.to_le_bytes());
        }
        data.extend_from_slice(&[0u8; 40]);
        let Err(err) = KernelBtf::parse(data) else {
            panic!("a truncated type section parsed")
        };
        assert!(format!("{err:#}").contains("past the end"), "{err:#}");
        // A struct whose members run past the section.
        let mut data = vec![0x9f, 0xeb, 1, 0];
        for word in [24u32, 0, 12, 12, 1] {
            data.extend_from_slice(&word.to_le_bytes());
        }
        for word in [0u32, (KIND_STRUCT << 24) | 5, 8] {
            data.extend_from_slice(&word.to_le_bytes());
        }
        data.push(0);
        assert!(KernelBtf::parse(data).is_err());
    }

    #[test]
    fn a_missing_struct_or_member_is_named() {
        let btf = KernelBtf::read(Path::new(VMLINUX)).unwrap();
        let err = btf.offset_of("no_such_struct", &["x"]).unwrap_err();
        assert!(err.to_string().contains("no_such_struct"), "{err}");
        let err = btf.offset_of("task_struct", &["se", "nope"]).unwrap_err();
        assert!(err.to_string().contains("se.nope"), "{err}");
    }
}

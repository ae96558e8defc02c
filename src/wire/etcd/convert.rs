//! etcd protobuf <-> protocol-neutral commands, and etcd's request validation (what etcd
//! checks before proposing: empty keys, txn size, overlapping writes in a txn).

use std::collections::HashSet;

use super::errors::EtcdError;
use crate::command::*;
use crate::pb::etcdserverpb as pb;
use crate::pb::mvccpb;

pub fn kv_to_pb(kv: KeyValue) -> mvccpb::KeyValue {
    mvccpb::KeyValue {
        key: kv.key,
        create_revision: kv.create_revision,
        mod_revision: kv.mod_revision,
        version: kv.version,
        value: kv.value,
        lease: kv.lease,
    }
}

pub fn event_to_pb(e: Event) -> mvccpb::Event {
    mvccpb::Event {
        r#type: match e.kind {
            EventKind::Put => mvccpb::event::EventType::Put as i32,
            EventKind::Delete => mvccpb::event::EventType::Delete as i32,
        },
        kv: Some(kv_to_pb(e.kv)),
        prev_kv: e.prev_kv.map(kv_to_pb),
    }
}

pub fn range_from_pb(r: pb::RangeRequest) -> Result<RangeOp, EtcdError> {
    if r.key.is_empty() {
        return Err(EtcdError::EmptyKey);
    }
    let sort_order = match r.sort_order {
        0 => SortOrder::None,
        1 => SortOrder::Ascend,
        2 => SortOrder::Descend,
        _ => return Err(EtcdError::InvalidSortOption),
    };
    let sort_target = match r.sort_target {
        0 => SortTarget::Key,
        1 => SortTarget::Version,
        2 => SortTarget::Create,
        3 => SortTarget::Mod,
        4 => SortTarget::Value,
        _ => return Err(EtcdError::InvalidSortOption),
    };
    Ok(RangeOp {
        key: r.key,
        range_end: r.range_end,
        limit: r.limit,
        revision: r.revision,
        sort_order,
        sort_target,
        keys_only: r.keys_only,
        count_only: r.count_only,
        min_mod_revision: r.min_mod_revision,
        max_mod_revision: r.max_mod_revision,
        min_create_revision: r.min_create_revision,
        max_create_revision: r.max_create_revision,
    })
}

pub fn put_from_pb(p: pb::PutRequest) -> Result<PutOp, EtcdError> {
    if p.key.is_empty() {
        return Err(EtcdError::EmptyKey);
    }
    if p.ignore_value && !p.value.is_empty() {
        return Err(EtcdError::ValueProvided);
    }
    if p.ignore_lease && p.lease != 0 {
        return Err(EtcdError::LeaseProvided);
    }
    Ok(PutOp {
        key: p.key,
        value: p.value,
        lease: p.lease,
        prev_kv: p.prev_kv,
        ignore_value: p.ignore_value,
        ignore_lease: p.ignore_lease,
    })
}

pub fn delete_from_pb(d: pb::DeleteRangeRequest) -> Result<DeleteOp, EtcdError> {
    if d.key.is_empty() {
        return Err(EtcdError::EmptyKey);
    }
    Ok(DeleteOp { key: d.key, range_end: d.range_end, prev_kv: d.prev_kv })
}

fn compare_from_pb(c: pb::Compare) -> Result<Compare, EtcdError> {
    use pb::compare::TargetUnion as U;
    if c.key.is_empty() {
        return Err(EtcdError::EmptyKey);
    }
    let result = match c.result {
        0 => CompareResult::Equal,
        1 => CompareResult::Greater,
        2 => CompareResult::Less,
        3 => CompareResult::NotEqual,
        _ => return Err(EtcdError::Internal("etcdserver: unknown compare result".into())),
    };
    // Like etcd, the target enum picks the field; a union of another kind reads as zero.
    let u = c.target_union;
    let target = match c.target {
        0 => CompareTarget::Version(if let Some(U::Version(v)) = u { v } else { 0 }),
        1 => CompareTarget::Create(if let Some(U::CreateRevision(v)) = u { v } else { 0 }),
        2 => CompareTarget::Mod(if let Some(U::ModRevision(v)) = u { v } else { 0 }),
        3 => CompareTarget::Value(if let Some(U::Value(v)) = u { v } else { Vec::new() }),
        4 => CompareTarget::Lease(if let Some(U::Lease(v)) = u { v } else { 0 }),
        _ => return Err(EtcdError::Internal("etcdserver: unknown compare target".into())),
    };
    Ok(Compare { result, target, key: c.key, range_end: c.range_end })
}

fn op_from_pb(op: pb::RequestOp, ops_max: usize) -> Result<RequestOp, EtcdError> {
    use pb::request_op::Request as R;
    match op.request {
        Some(R::RequestRange(r)) => Ok(RequestOp::Range(range_from_pb(r)?)),
        Some(R::RequestPut(p)) => Ok(RequestOp::Put(put_from_pb(p)?)),
        Some(R::RequestDeleteRange(d)) => Ok(RequestOp::DeleteRange(delete_from_pb(d)?)),
        Some(R::RequestTxn(t)) => Ok(RequestOp::Txn(txn_from_pb_inner(t, ops_max)?)),
        // etcd answers an empty op with "key not found".
        None => Err(EtcdError::KeyNotFound),
    }
}

/// etcd's checkTxnRequest: the widest of compare/success/failure must fit `ops_max`, and each
/// nested txn gets what is left of the budget.
fn txn_from_pb_inner(t: pb::TxnRequest, ops_max: usize) -> Result<TxnOp, EtcdError> {
    let widest = t.compare.len().max(t.success.len()).max(t.failure.len());
    if widest > ops_max {
        return Err(EtcdError::TooManyOps);
    }
    let left = ops_max - widest;
    let compare = t.compare.into_iter().map(compare_from_pb).collect::<Result<Vec<_>, _>>()?;
    let success = t.success.into_iter().map(|o| op_from_pb(o, left)).collect::<Result<Vec<_>, _>>()?;
    let failure = t.failure.into_iter().map(|o| op_from_pb(o, left)).collect::<Result<Vec<_>, _>>()?;
    Ok(TxnOp { compare, success, failure })
}

pub fn txn_from_pb(t: pb::TxnRequest, ops_max: usize) -> Result<TxnOp, EtcdError> {
    let op = txn_from_pb_inner(t, ops_max)?;
    check_intervals(&op.success)?;
    check_intervals(&op.failure)?;
    Ok(op)
}

/// A deleted range, for overlap checks: [key, end), or the single key when `end` is None.
///
/// `end` is compared as the bytes it is, as etcd's interval tree does: a range_end of "\0"
/// (every key from `key` on, when the delete runs) makes the empty interval [key, "\0") here,
/// so etcd 3.4/3.5 let a put of any key through beside such a delete; so do we.
#[derive(Clone, Debug)]
struct Del {
    key: Vec<u8>,
    end: Option<Vec<u8>>,
}

impl Del {
    fn contains(&self, k: &[u8]) -> bool {
        match &self.end {
            None => k == self.key.as_slice(),
            Some(end) => k >= self.key.as_slice() && k < end.as_slice(),
        }
    }
}

/// etcd's checkIntervals: within one branch no key may be put twice, and no put may fall in a
/// deleted range, looking through nested txns (whose then/else branches exclude each other).
fn check_intervals(ops: &[RequestOp]) -> Result<(HashSet<Vec<u8>>, Vec<Del>), EtcdError> {
    let mut dels: Vec<Del> = Vec::new();
    for op in ops {
        if let RequestOp::DeleteRange(d) = op {
            let end = (!d.range_end.is_empty()).then(|| d.range_end.clone());
            dels.push(Del { key: d.key.clone(), end });
        }
    }
    let mut puts: HashSet<Vec<u8>> = HashSet::new();
    for op in ops {
        let RequestOp::Txn(t) = op else { continue };
        let (puts_then, dels_then) = check_intervals(&t.success)?;
        let (puts_else, dels_else) = check_intervals(&t.failure)?;
        for k in &puts_then {
            if puts.contains(k) || dels.iter().any(|d| d.contains(k)) {
                return Err(EtcdError::DuplicateKey);
            }
            puts.insert(k.clone());
        }
        for k in &puts_else {
            if puts.contains(k) && !puts_then.contains(k) {
                return Err(EtcdError::DuplicateKey);
            }
            if dels.iter().any(|d| d.contains(k)) {
                return Err(EtcdError::DuplicateKey);
            }
            puts.insert(k.clone());
        }
        dels.extend(dels_then);
        dels.extend(dels_else);
    }
    for op in ops {
        let RequestOp::Put(p) = op else { continue };
        if puts.contains(&p.key) || dels.iter().any(|d| d.contains(&p.key)) {
            return Err(EtcdError::DuplicateKey);
        }
        puts.insert(p.key.clone());
    }
    Ok((puts, dels))
}

pub fn range_result_to_pb(r: RangeResult, header: Option<pb::ResponseHeader>) -> pb::RangeResponse {
    pb::RangeResponse { header, kvs: r.kvs.into_iter().map(kv_to_pb).collect(), more: r.more, count: r.count }
}

/// A txn's results as etcd shapes them (its applier's applyTxn over one mvcc write txn that
/// began at revision `begin`): a put answers `begin + 1`; a delete `begin + 1` once the txn
/// has changed anything (itself included), else `begin`; a range the revision it read at; a
/// nested txn an empty header. The top level gets the full header from the caller, with the
/// txn's final `revision`.
pub fn txn_result_to_pb(t: TxnResult, revision: i64, header: Option<pb::ResponseHeader>) -> pb::TxnResponse {
    let begin = if txn_changes(&t) { revision - 1 } else { revision };
    let mut changed = false;
    txn_to_pb(t, begin, &mut changed, header)
}

/// Whether a txn's results show a change: any put, or a delete that deleted something.
fn txn_changes(t: &TxnResult) -> bool {
    t.responses.iter().any(|r| match r {
        OpResult::Range(_) => false,
        OpResult::Put(_) => true,
        OpResult::DeleteRange(d) => d.deleted > 0,
        OpResult::Txn(t) => txn_changes(t),
    })
}

/// `changed`: whether an op before (in execution order, nested txns included) changed a key.
fn txn_to_pb(t: TxnResult, begin: i64, changed: &mut bool, header: Option<pb::ResponseHeader>) -> pb::TxnResponse {
    use pb::response_op::Response as R;
    let inner = |revision: i64| Some(pb::ResponseHeader { revision, ..Default::default() });
    let mut responses = Vec::with_capacity(t.responses.len());
    for r in t.responses {
        let response = match r {
            OpResult::Range(rr) => {
                let rev = rr.revision;
                R::ResponseRange(range_result_to_pb(rr, inner(rev)))
            }
            OpResult::Put(p) => {
                *changed = true;
                R::ResponsePut(pb::PutResponse { header: inner(begin + 1), prev_kv: p.prev_kv.map(kv_to_pb) })
            }
            OpResult::DeleteRange(d) => {
                *changed |= d.deleted > 0;
                R::ResponseDeleteRange(pb::DeleteRangeResponse {
                    header: inner(if *changed { begin + 1 } else { begin }),
                    deleted: d.deleted,
                    prev_kvs: d.prev_kvs.into_iter().map(kv_to_pb).collect(),
                })
            }
            OpResult::Txn(t) => R::ResponseTxn(txn_to_pb(t, begin, changed, Some(pb::ResponseHeader::default()))),
        };
        responses.push(pb::ResponseOp { response: Some(response) });
    }
    pb::TxnResponse { header, succeeded: t.succeeded, responses }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn put(k: &str) -> RequestOp {
        RequestOp::Put(PutOp { key: k.as_bytes().to_vec(), ..Default::default() })
    }
    fn del(k: &str, end: &str) -> RequestOp {
        RequestOp::DeleteRange(DeleteOp {
            key: k.as_bytes().to_vec(),
            range_end: end.as_bytes().to_vec(),
            prev_kv: false,
        })
    }
    fn txn(success: Vec<RequestOp>, failure: Vec<RequestOp>) -> RequestOp {
        RequestOp::Txn(TxnOp { compare: vec![], success, failure })
    }

    /// Goal: a txn's per-op headers as etcd's applier fills them. Method: a txn that deletes
    /// nothing, then puts, then deletes nothing again, then a nested txn: revision 10 before it.
    #[test]
    fn txn_response_headers_follow_etcd() {
        let none = || OpResult::DeleteRange(DeleteResult::default());
        let put = || OpResult::Put(PutResult { prev_kv: None });
        let t = TxnResult {
            succeeded: true,
            responses: vec![
                none(),
                put(),
                none(),
                OpResult::Txn(TxnResult { succeeded: false, responses: vec![none()] }),
            ],
        };
        let r = txn_result_to_pb(t, 11, None);
        use pb::response_op::Response as R;
        let revs: Vec<i64> = r
            .responses
            .iter()
            .map(|o| match o.response.as_ref().unwrap() {
                R::ResponsePut(p) => p.header.as_ref().unwrap().revision,
                R::ResponseDeleteRange(d) => d.header.as_ref().unwrap().revision,
                R::ResponseTxn(t) => {
                    assert_eq!(t.header, Some(pb::ResponseHeader::default()), "a nested txn's header is empty");
                    match t.responses[0].response.as_ref().unwrap() {
                        R::ResponseDeleteRange(d) => d.header.as_ref().unwrap().revision,
                        _ => unreachable!(),
                    }
                }
                R::ResponseRange(_) => unreachable!(),
            })
            .collect();
        assert_eq!(revs, vec![10, 11, 11, 11], "a delete before any change answers the old revision");
        // Nothing changed at all: every delete answers the txn's (unchanged) revision.
        let r = txn_result_to_pb(TxnResult { succeeded: true, responses: vec![none()] }, 10, None);
        match r.responses[0].response.as_ref().unwrap() {
            R::ResponseDeleteRange(d) => assert_eq!(d.header.as_ref().unwrap().revision, 10),
            _ => unreachable!(),
        }
    }

    #[test]
    fn txn_overlap_rules_follow_etcd() {
        assert!(check_intervals(&[put("a"), put("b")]).is_ok());
        assert_eq!(check_intervals(&[put("a"), put("a")]).unwrap_err(), EtcdError::DuplicateKey);
        assert_eq!(check_intervals(&[del("a", "c"), put("b")]).unwrap_err(), EtcdError::DuplicateKey);
        assert!(check_intervals(&[del("a", "c"), put("c")]).is_ok());
        // etcd compares a range_end of "\0" as a byte string: [a, "\0") is empty there.
        assert!(check_intervals(&[del("a", "\0"), put("zzz")]).is_ok());
        assert!(check_intervals(&[del("a", "\0"), put("a")]).is_ok());
        assert!(check_intervals(&[txn(vec![del("a", "\0")], vec![]), put("b")]).is_ok());
        // then/else of one nested txn exclude each other.
        assert!(check_intervals(&[txn(vec![put("a")], vec![put("a")])]).is_ok());
        assert_eq!(check_intervals(&[txn(vec![put("a")], vec![]), put("a")]).unwrap_err(), EtcdError::DuplicateKey);
        assert_eq!(check_intervals(&[txn(vec![del("a", "")], vec![]), put("a")]).unwrap_err(), EtcdError::DuplicateKey);
        // Two deletes may overlap.
        assert!(check_intervals(&[del("a", "c"), del("b", "d")]).is_ok());
    }
}

//! etcd's Watch service: one task per stream owns the gRPC output. It reads client requests
//! (create, cancel, progress) and the hub's queue for this stream, so a "created" reply is
//! always written before any event of that watcher, and a "canceled" reply after its last one.

use std::collections::HashMap;
use std::pin::Pin;
use std::sync::Arc;

use futures_util::Stream;
use prost::Message;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status, Streaming};

use super::convert::event_to_pb;
use super::errors::EtcdError;
use super::Ctx;
use crate::pb::etcdserverpb as pb;
use crate::pb::etcdserverpb::watch_server::Watch;
use crate::watch::{HubMsg, WatchError, WatchSpec};

/// Responses buffered towards one client before the stream task waits for it.
const OUTPUT_QUEUE_MAX: usize = 128;
/// How often a deferred progress request checks whether the stream's watchers caught up.
const PROGRESS_RECHECK: std::time::Duration = std::time::Duration::from_millis(20);
/// Compacted watches whose ids a stream keeps (see `StreamTask::compacted`).
const COMPACTED_IDS_MAX: usize = 10_000;
/// What etcd's watch server adds to the request size limit for a fragment's bound
/// (`grpcOverheadBytes` in etcd's v3rpc): a fragmenting watch's parts stay under the sum.
const GRPC_OVERHEAD_BYTES: usize = 512 * 1024;

pub struct WatchService {
    ctx: Arc<Ctx>,
}

impl WatchService {
    pub fn new(ctx: Arc<Ctx>) -> WatchService {
        WatchService { ctx }
    }
}

type WatchStream = Pin<Box<dyn Stream<Item = Result<pb::WatchResponse, Status>> + Send + 'static>>;

struct Active {
    fragment: bool,
    /// Ended by a compaction: the hub dropped it, but its id stays taken until the client
    /// cancels it, as in etcd (whose watchStream keeps a compacted watcher): a new watch
    /// asking for that id is a duplicate, automatic ids skip it, and a cancel is answered.
    /// The number is its place in `StreamTask::compacted`.
    compacted: Option<u64>,
}

struct StreamTask {
    ctx: Arc<Ctx>,
    stream: crate::watch::StreamId,
    out: mpsc::Sender<Result<pb::WatchResponse, Status>>,
    active: HashMap<i64, Active>,
    next_id: i64,
    /// Compacted watches still holding their ids, oldest first, with their numbers (an entry
    /// whose watch was cancelled since, or whose id was taken again, is stale and skipped).
    /// etcd keeps them for the stream's life; here the oldest is forgotten past
    /// [`COMPACTED_IDS_MAX`], so a client that never cancels them cannot grow this without bound.
    compacted: std::collections::VecDeque<(i64, u64)>,
    compacted_seq: u64,
}

#[tonic::async_trait]
impl Watch for WatchService {
    type WatchStream = WatchStream;

    async fn watch(
        &self,
        request: Request<Streaming<pb::WatchRequest>>,
    ) -> Result<Response<Self::WatchStream>, Status> {
        let mut inbound = request.into_inner();
        let (stream, mut hub_rx) = self.ctx.hub.open_stream().map_err(|_| EtcdError::TooManyRequests)?;
        let (out, out_rx) = mpsc::channel(OUTPUT_QUEUE_MAX);
        let mut task = StreamTask {
            ctx: self.ctx.clone(),
            stream,
            out,
            active: HashMap::new(),
            next_id: 0,
            compacted: Default::default(),
            compacted_seq: 0,
        };
        tokio::spawn(async move {
            // A progress request while a watcher is still catching up waits until it caught up
            // (etcd defers it too): the answer promises every event up to its revision is out.
            let mut progress_pending = false;
            let mut recheck = tokio::time::interval(PROGRESS_RECHECK);
            loop {
                tokio::select! {
                    biased;
                    m = hub_rx.recv() => match m {
                        Some(m) => if !task.forward(m).await { break },
                        None => break,
                    },
                    _ = recheck.tick(), if progress_pending => {
                        if task.ctx.hub.stream_synced(task.stream) {
                            progress_pending = false;
                            if !task.progress(&mut hub_rx).await { break }
                        }
                    },
                    req = inbound.message() => match req {
                        Ok(Some(pb::WatchRequest {
                            request_union: Some(pb::watch_request::RequestUnion::ProgressRequest(_)),
                        })) => {
                            if task.ctx.hub.stream_synced(task.stream) {
                                if !task.progress(&mut hub_rx).await { break }
                            } else {
                                progress_pending = true;
                            }
                        }
                        Ok(Some(req)) => if !task.handle(req).await { break },
                        _ => break,
                    },
                    _ = task.out.closed() => break,
                }
            }
            task.ctx.hub.close_stream(task.stream);
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(out_rx))))
    }
}

impl StreamTask {
    async fn send(&self, r: pb::WatchResponse) -> bool {
        self.out.send(Ok(r)).await.is_ok()
    }

    fn header(&self, revision: i64) -> Option<pb::ResponseHeader> {
        Some(self.ctx.header(revision))
    }

    async fn handle(&mut self, req: pb::WatchRequest) -> bool {
        use pb::watch_request::RequestUnion as U;
        match req.request_union {
            Some(U::CreateRequest(c)) => self.create(c).await,
            Some(U::CancelRequest(c)) => {
                let compacted = self.active.get(&c.watch_id).is_some_and(|a| a.compacted.is_some());
                if compacted || self.ctx.hub.cancel(self.stream, c.watch_id) {
                    self.active.remove(&c.watch_id);
                    let rev = self.ctx.hub.revision();
                    return self
                        .send(pb::WatchResponse {
                            header: self.header(rev),
                            watch_id: c.watch_id,
                            canceled: true,
                            ..Default::default()
                        })
                        .await;
                }
                true
            }
            // Answered by `progress` (it needs the hub queue); never reaches here.
            Some(U::ProgressRequest(_)) => true,
            None => true,
        }
    }

    /// etcd's answer to a progress request: ONE response for the whole stream, watch id -1
    /// ("not associated with any watcher", which clients broadcast to all of the stream's
    /// watchers) and a header at the current revision, whatever watchers the stream has (none
    /// included).  Events the hub queued for this stream up to that revision go out first.
    async fn progress(&mut self, hub_rx: &mut mpsc::Receiver<HubMsg>) -> bool {
        // Read the revision before draining: the hub makes a revision current and queues its
        // events under one lock, so every event up to `rev` is in the queue by now.
        let rev = self.ctx.hub.revision();
        while let Ok(m) = hub_rx.try_recv() {
            if !self.forward(m).await {
                return false;
            }
        }
        self.send(pb::WatchResponse { header: self.header(rev), watch_id: -1, ..Default::default() }).await
    }

    async fn create(&mut self, c: pb::WatchCreateRequest) -> bool {
        let rev = self.ctx.hub.revision();
        // etcd: an empty key is "\0", the smallest key (so an empty key alone watches the key
        // "\0", and with an end the range from it); an end at or before the key is an empty
        // range, refused; an end of "\0" means "from key".
        let key = if c.key.is_empty() { vec![0] } else { c.key.clone() };
        let range_end = c.range_end.clone();
        let bad_range = !range_end.is_empty() && range_end != [0] && range_end <= key;
        let header = self.header(rev);
        let refuse = |reason: String| pb::WatchResponse {
            header,
            watch_id: -1,
            created: true,
            canceled: true,
            cancel_reason: reason,
            ..Default::default()
        };
        // Refused before an id is taken, as etcd's watchStream.Watch does: the next watch
        // gets the id this one would have had.
        if bad_range {
            return self.send(refuse("mvcc: watcher range is empty".into())).await;
        }
        let id = if c.watch_id != 0 {
            c.watch_id
        } else {
            while self.active.contains_key(&self.next_id) {
                self.next_id += 1;
            }
            let id = self.next_id;
            self.next_id += 1;
            id
        };
        if c.watch_id != 0 && self.active.contains_key(&id) {
            return self.send(refuse("mvcc: duplicate watch ID provided on the WatchStream".into())).await;
        }
        let spec = WatchSpec {
            key,
            range_end,
            start_revision: c.start_revision,
            prev_kv: c.prev_kv,
            filter_put: c.filters.contains(&(pb::watch_create_request::FilterType::Noput as i32)),
            filter_delete: c.filters.contains(&(pb::watch_create_request::FilterType::Nodelete as i32)),
            progress_notify: c.progress_notify,
        };
        // The created reply goes out first; events can only follow once the hub knows the
        // watcher, and they come through this same task.
        let created = pb::WatchResponse { header: self.header(rev), watch_id: id, created: true, ..Default::default() };
        if !self.send(created).await {
            return false;
        }
        match self.ctx.hub.watch(self.stream, id, spec) {
            Ok(()) => {
                self.active.insert(id, Active { fragment: c.fragment, compacted: None });
                true
            }
            Err(e) => {
                let reason = match e {
                    WatchError::TooManyWatchers => "conclave: too many watchers on this stream",
                    WatchError::TooManyStreams => "conclave: too many watch streams",
                    WatchError::DuplicateId => "mvcc: duplicate watch ID provided on the WatchStream",
                };
                self.send(pb::WatchResponse {
                    header: self.header(rev),
                    watch_id: id,
                    canceled: true,
                    cancel_reason: reason.into(),
                    ..Default::default()
                })
                .await
            }
        }
    }

    async fn forward(&mut self, m: HubMsg) -> bool {
        match m {
            HubMsg::Events { watch_id, revision, events } => {
                let Some(a) = self.active.get(&watch_id).filter(|a| a.compacted.is_none()) else {
                    return true;
                };
                let events: Vec<_> = events.into_iter().map(event_to_pb).collect();
                let resp = pb::WatchResponse { header: self.header(revision), watch_id, events, ..Default::default() };
                if a.fragment {
                    return self.send_fragments(resp).await;
                }
                self.send(resp).await
            }
            HubMsg::Compacted { watch_id, compact_revision, .. } => {
                match self.active.get_mut(&watch_id) {
                    Some(a) if a.compacted.is_none() => {
                        self.compacted_seq += 1;
                        a.compacted = Some(self.compacted_seq);
                        self.compacted.push_back((watch_id, self.compacted_seq));
                    }
                    _ => return true,
                }
                while self.compacted.len() > COMPACTED_IDS_MAX {
                    let (old, seq) = self.compacted.pop_front().expect("longer than the bound");
                    if self.active.get(&old).is_some_and(|a| a.compacted == Some(seq)) {
                        self.active.remove(&old);
                    }
                }
                // etcd's compaction cancel carries a header without a revision.
                self.send(pb::WatchResponse {
                    header: self.header(0),
                    watch_id,
                    canceled: true,
                    compact_revision,
                    ..Default::default()
                })
                .await
            }
            HubMsg::Progress { watch_id, revision } => {
                if watch_id != -1 && self.active.get(&watch_id).is_none_or(|a| a.compacted.is_some()) {
                    return true;
                }
                self.send(pb::WatchResponse { header: self.header(revision), watch_id, ..Default::default() }).await
            }
        }
    }

    /// etcd's fragmenting (`sendFragments`), boundary for boundary: a response under the
    /// limit, or with fewer than two events, goes whole; otherwise each part takes events
    /// while its encoded size stays under the limit (a part's first event always goes in),
    /// and every part but the last says `fragment`. The limit is the request size limit plus
    /// etcd's 512 KiB allowance for gRPC overhead, as etcd's watch server computes it.
    async fn send_fragments(&self, resp: pb::WatchResponse) -> bool {
        let limit = self.ctx.limits.max_request_bytes + GRPC_OVERHEAD_BYTES;
        if resp.encoded_len() < limit || resp.events.len() < 2 {
            return self.send(resp).await;
        }
        let mut rest = resp.events.into_iter().peekable();
        let empty = pb::WatchResponse { events: Vec::new(), fragment: true, ..resp };
        let base = empty.encoded_len();
        while rest.peek().is_some() {
            let mut part = pb::WatchResponse { events: Vec::new(), ..empty.clone() };
            let mut size = base;
            while let Some(e) = rest.peek() {
                // Field 11 (one tag byte), the length, the event.
                let n = e.encoded_len();
                let grown = size + 1 + prost::encoding::encoded_len_varint(n as u64) + n;
                if !part.events.is_empty() && grown >= limit {
                    break;
                }
                size = grown;
                part.events.push(rest.next().expect("peeked"));
            }
            part.fragment = rest.peek().is_some();
            if !self.send(part).await {
                return false;
            }
        }
        true
    }
}

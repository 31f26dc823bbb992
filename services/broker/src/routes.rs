//! The Kafka requests a connection to the embedded broker answers: tansu's own routes, plus what
//! the processor's transactions need and tansu 0.6.0 lacks.
//!
//! tansu-broker 0.6.0 routes no EndTxn (API key 26) although its storage implements `txn_end`, so
//! librdkafka's `commit_transaction` and `abort_transaction` fail with "EndTxnRequest not supported
//! by broker" and the processor's transactions cannot run. Once they run, aborted records reach
//! read_committed consumers, because tansu's Fetch never lists aborted transactions (see
//! [`ReadCommittedFetchService`]). tansu's route builders and services are public and its router
//! advertises in ApiVersions exactly the keys it has routes for, so composing them with our two
//! routes is enough for clients to see and use them; nothing of tansu is forked.

use rama::layer::{MapErrLayer, MapStateLayer};
use rama::{Context, Layer as _, Service};
use tansu_broker::Error;
use tansu_broker::coordinator::group::Coordinator;
use tansu_broker::service::{auth, coordinator, storage};
use tansu_sans_io::fetch_response::AbortedTransaction;
use tansu_sans_io::record::Record;
use tansu_sans_io::record::deflated::Batch;
use tansu_sans_io::{
    ApiKey as _, BatchAttribute, ControlBatch, EndTxnRequest, EndTxnResponse, FetchRequest, FetchResponse,
    IsolationLevel,
};
use tansu_service::{
    BytesFrameLayer, BytesFrameService, FrameRequestLayer, FrameRouteBuilder, FrameRouteService, TcpBytesLayer,
    TcpBytesService, TcpContext, TcpContextLayer, TcpContextService,
};
use tansu_storage::{FetchService, Storage, TopicId, Topition};

/// What serves one client connection: bytes off the socket, into frames, through the router.
pub(crate) type ConnectionService =
    TcpContextService<TcpBytesService<BytesFrameService<FrameRouteService<(), Error>>, ()>>;

/// The service for one connection: tansu 0.6.0's routes, EndTxn, and Fetch made read_committed.
///
/// Built per connection as tansu does: the routes are cheap to build and hold only handles to the
/// shared storage and group coordinator, so no state leaks between connections through them.
pub(crate) fn connection_service<C, S>(cluster_id: &str, groups: C, store: S) -> Result<ConnectionService, Error>
where
    C: Coordinator,
    S: Storage,
{
    // tansu's `storage::services` less its Fetch route, which `read_committed_fetch` replaces.
    let tansu_storage_routes = [
        storage::add_offsets_to_txn,
        storage::add_partitions_to_txn,
        storage::alter_user_scram_credentials,
        storage::consumer_group_describe,
        storage::create_acls,
        storage::create_topics,
        storage::delete_groups,
        storage::delete_records,
        storage::delete_topics,
        storage::describe_acls,
        storage::describe_cluster,
        storage::describe_configs,
        storage::describe_groups,
        storage::describe_topic_partitions,
        storage::describe_user_scram_credentials,
        storage::find_coordinator,
        storage::get_telemetry_subscriptions,
        storage::incremental_alter_configs,
        storage::init_producer_id,
        storage::list_groups,
        storage::list_offsets,
        storage::list_partition_reassignments,
        storage::metadata,
        storage::produce,
        storage::txn_offset_commit_request,
    ];
    let routes = tansu_storage_routes
        .iter()
        .try_fold(FrameRouteService::<(), Error>::builder(), |builder, route| route(builder, store.clone()))
        .and_then(|builder| read_committed_fetch(builder, store.clone()))
        .and_then(|builder| end_txn(builder, store))
        .and_then(|builder| coordinator::services(builder, groups))
        // No SASL is configured; tansu registers these routes all the same, kept for parity.
        .and_then(auth::services)
        .and_then(|builder| builder.build().map_err(Into::into))?;
    Ok((
        TcpContextLayer::new(TcpContext::default().cluster_id(Some(cluster_id.into()))),
        TcpBytesLayer::default(),
        BytesFrameLayer::default(),
    )
        .into_layer(routes))
}

/// Adds the EndTxn route, shaped like tansu's own storage routes so errors and state flow the same.
fn end_txn<S>(builder: FrameRouteBuilder<(), Error>, store: S) -> Result<FrameRouteBuilder<(), Error>, Error>
where
    S: Storage,
{
    builder
        .with_route(
            EndTxnRequest::KEY,
            (MapErrLayer::new(Error::from), MapStateLayer::new(|_| store), FrameRequestLayer::<EndTxnRequest>::new())
                .into_layer(EndTxnService)
                .boxed(),
        )
        .map_err(Into::into)
}

/// Commits or aborts a transaction through the storage's `txn_end`, which marks the transaction's
/// records committed or aborted (what read_committed fetches filter on) and, on commit, makes the
/// offsets sent with `send_offsets_to_transaction` the group's committed offsets.
#[derive(Clone, Copy, Debug, Default)]
struct EndTxnService;

impl<S> Service<S, EndTxnRequest> for EndTxnService
where
    S: Storage,
{
    type Response = EndTxnResponse;
    type Error = tansu_storage::Error;

    async fn serve(&self, ctx: Context<S>, req: EndTxnRequest) -> Result<Self::Response, Self::Error> {
        let code = ctx
            .state()
            .txn_end(req.transactional_id.as_str(), req.producer_id, req.producer_epoch, req.committed)
            .await?;
        Ok(EndTxnResponse::default().throttle_time_ms(0).error_code(code.into()))
    }
}

/// Adds the Fetch route: tansu's own, plus the aborted transactions read_committed clients need.
fn read_committed_fetch<S>(
    builder: FrameRouteBuilder<(), Error>,
    store: S,
) -> Result<FrameRouteBuilder<(), Error>, Error>
where
    S: Storage,
{
    builder
        .with_route(
            FetchRequest::KEY,
            (MapErrLayer::new(Error::from), MapStateLayer::new(|_| store), FrameRequestLayer::<FetchRequest>::new())
                .into_layer(ReadCommittedFetchService)
                .boxed(),
        )
        .map_err(Into::into)
}

/// tansu's Fetch, with each partition's aborted transactions filled in for read_committed fetches.
///
/// Kafka leaves aborted records in the log; a read_committed client drops them because the fetch
/// response lists, per partition, the producers whose transactions in the returned range were
/// aborted, and from which offset. tansu 0.6.0 writes the abort markers but always answers that
/// list empty, so librdkafka hands aborted records to read_committed consumers. The markers are in
/// the log, so the list is rebuilt from them here.
#[derive(Clone, Copy, Debug, Default)]
struct ReadCommittedFetchService;

/// How much a search for a transaction's end marker reads per step.
const MARKER_SCAN_BYTES: u32 = 1 << 20;

impl<S> Service<S, FetchRequest> for ReadCommittedFetchService
where
    S: Storage,
{
    type Response = FetchResponse;
    type Error = tansu_storage::Error;

    async fn serve(&self, ctx: Context<S>, req: FetchRequest) -> Result<Self::Response, Self::Error> {
        let read_committed = req.isolation_level == Some(i8::from(IsolationLevel::ReadCommitted));
        let store = ctx.state().clone();
        let mut response = FetchService.serve(ctx, req).await?;
        if !read_committed {
            return Ok(response);
        }
        for topic in response.responses.iter_mut().flatten() {
            let Some(name) = topic_name(&store, topic.topic.as_deref(), topic.topic_id).await? else { continue };
            for partition in topic.partitions.iter_mut().flatten() {
                let Some(records) = &partition.records else { continue };
                let tp = Topition::new(name.as_str(), partition.partition_index);
                let aborted = aborted_transactions(&store, &tp, &records.batches, partition.high_watermark).await?;
                partition.aborted_transactions = Some(aborted);
            }
        }
        Ok(response)
    }
}

/// The topic's name: fetches from v13 on name topics by id only.
async fn topic_name<S: Storage>(
    store: &S,
    name: Option<&str>,
    id: Option<[u8; 16]>,
) -> Result<Option<String>, tansu_storage::Error> {
    if let Some(name) = name.filter(|n| !n.is_empty()) {
        return Ok(Some(name.to_owned()));
    }
    let Some(id) = id else { return Ok(None) };
    let metadata = store.metadata(Some(&[TopicId::from(id)])).await?;
    Ok(metadata.topics().first().and_then(|t| t.name.clone()))
}

/// The transactions with records in `batches` that ended aborted, each with the offset of its first
/// record in `batches` (what clients skip from). A transaction whose end marker lies past `batches`
/// is looked up further along the log, up to `high_watermark`.
async fn aborted_transactions<S: Storage>(
    store: &S,
    tp: &Topition,
    batches: &[Batch],
    high_watermark: i64,
) -> Result<Vec<AbortedTransaction>, tansu_storage::Error> {
    let mut aborted = Vec::new();
    // Producer id -> first offset of its transaction that is open at this point of the scan.
    let mut open = std::collections::BTreeMap::new();
    scan(batches, &mut open, &mut aborted, true)?;
    let mut next = batches.last().map_or(high_watermark, |b| b.base_offset + i64::from(b.last_offset_delta) + 1);
    while !open.is_empty() && next < high_watermark {
        let more = store.fetch(tp, next, 0, MARKER_SCAN_BYTES, IsolationLevel::ReadUncommitted).await?;
        let Some(last) = more.last() else { break };
        let after = last.base_offset + i64::from(last.last_offset_delta) + 1;
        scan(&more, &mut open, &mut aborted, false)?;
        if after <= next {
            break;
        }
        next = after;
    }
    aborted.sort_by_key(|t| t.first_offset);
    Ok(aborted)
}

/// Follows transactions through `batches`: opens one at a producer's first transactional batch
/// (only when `may_open`, i.e. within the returned range) and records it in `aborted` when its
/// producer's abort marker comes.
fn scan(
    batches: &[Batch],
    open: &mut std::collections::BTreeMap<i64, i64>,
    aborted: &mut Vec<AbortedTransaction>,
    may_open: bool,
) -> Result<(), tansu_storage::Error> {
    for batch in batches {
        let attributes = BatchAttribute::try_from(batch.attributes)?;
        if !attributes.transaction {
            continue;
        }
        if !attributes.control {
            if may_open {
                open.entry(batch.producer_id).or_insert(batch.base_offset);
            }
            continue;
        }
        let Some(first_offset) = open.remove(&batch.producer_id) else { continue };
        if is_abort_marker(batch)? {
            aborted.push(AbortedTransaction::default().producer_id(batch.producer_id).first_offset(first_offset));
        }
    }
    Ok(())
}

fn is_abort_marker(batch: &Batch) -> Result<bool, tansu_storage::Error> {
    let records = Vec::<Record>::try_from(batch)?;
    for key in records.into_iter().filter_map(|r| r.key) {
        if ControlBatch::try_from(key)?.is_abort() {
            return Ok(true);
        }
    }
    Ok(false)
}

data "aws_region" "current" {}
data "aws_caller_identity" "current" {}
data "aws_partition" "current" {}

locals {
  region     = data.aws_region.current.region
  account_id = data.aws_caller_identity.current.account_id
  partition  = data.aws_partition.current.partition
  tags       = merge({ "sequencer:prefix" = var.prefix, "sequencer:market" = lower(var.data_market_address) }, var.tags)

  # Queues and tables: the names localstack/resources.py creates and adapters/aws/src/{sqs,dynamo}.rs
  # look up (<prefix>-<base>[-dlq][.fifo]). check/drift.py compares both lists.
  queues = {
    submissions = { fifo = false, consumer = "verify" }
    finalize    = { fifo = false, consumer = "finalize" }
    anchor      = { fifo = true, consumer = "anchor" }
  }
  # name -> ttl enabled (all keys are pk + sk strings: adapters/aws/src/dynamo.rs). Every table
  # expires by TTL: one retention (RECORD_TTL_DAYS) for every record of an epoch, written as
  # one `ttl` (handlers/src/records/mod.rs).
  tables = {
    submissions = true
    receipts    = true
    counters    = true
    epochs      = true
    blocks      = true
    batches     = true
  }
  buckets = ["batches"]

  # Per-function defaults. Why these numbers:
  #  verify   - CPU-bound signature recovery: 1769 MB = one full vCPU on Lambda; batches of 100
  #             (window 1 s) amortise the per-invocation cost; concurrency grows with queue depth.
  #  tick     - one per minute, loops on the chain head until 5 s before its timeout (tick.rs).
  #             Reserved concurrency 1: a late invocation never overlaps the previous one.
  #  finalize - one epoch per message; reads the epoch's submissions, builds batches, IPFS adds.
  #  anchor   - FIFO, one message group per signing key, reserved concurrency 1: one writer per
  #             key. Timeout covers RECEIPT_TIMEOUT_SECS (120) + PENDING_TIMEOUT_SECS (180).
  #  epoch-manager - like tick; its own key; reserved concurrency 1 (one sender per key). Its
  #             loop stops RELEASE_TIMEOUT_SECS (20) + 2 s before the deadline, so a timeout
  #             of 80 s polls for ~58 s of every minute; the next minute's invocation waits
  #             (throttled, retried by Lambda) until this one returns.
  #  proof    - read-only API.
  function_defaults = {
    verify          = { memory_size = 1769, timeout = 30, reserved_concurrency = -1, batch_size = 100, batching_window_secs = 1, maximum_concurrency = 50, log_retention_days = 30, visibility_multiplier = 6, max_receive_count = 5 }
    tick            = { memory_size = 256, timeout = 60, reserved_concurrency = 1, batch_size = null, batching_window_secs = null, maximum_concurrency = null, log_retention_days = 30, visibility_multiplier = null, max_receive_count = null }
    finalize        = { memory_size = 1024, timeout = 300, reserved_concurrency = 4, batch_size = 1, batching_window_secs = 0, maximum_concurrency = 2, log_retention_days = 30, visibility_multiplier = 6, max_receive_count = 5 }
    anchor          = { memory_size = 256, timeout = 330, reserved_concurrency = 1, batch_size = 10, batching_window_secs = null, maximum_concurrency = 2, log_retention_days = 90, visibility_multiplier = 2, max_receive_count = 10 }
    "epoch-manager" = { memory_size = 256, timeout = 80, reserved_concurrency = 1, batch_size = null, batching_window_secs = null, maximum_concurrency = null, log_retention_days = 90, visibility_multiplier = null, max_receive_count = null }
    proof           = { memory_size = 512, timeout = 10, reserved_concurrency = var.proof.reserved_concurrency, batch_size = null, batching_window_secs = null, maximum_concurrency = null, log_retention_days = 30, visibility_multiplier = null, max_receive_count = null }
  }

  enabled_functions = toset(concat(
    ["verify", "tick", "finalize", "anchor"],
    var.epoch_manager.enabled ? ["epoch-manager"] : [],
    var.proof.enabled ? ["proof"] : [],
  ))

  fn = {
    for name in local.enabled_functions : name => {
      for k, v in local.function_defaults[name] :
      k => try(coalesce(var.functions[name][k], v), v)
    }
  }

  # The queue a function consumes, if any.
  consumer_queue = { for q, c in local.queues : c.consumer => q }

  # Visibility timeout of a queue = multiplier x its consumer's timeout (AWS: >= 6x for standard
  # queues so a message is not redelivered while a retrying batch still runs).
  visibility = { for q, c in local.queues : q => local.fn[c.consumer].timeout * local.fn[c.consumer].visibility_multiplier }

  # Σ visibility timeout × maxReceiveCount over the queues (verify, finalize, anchor, one after
  # the other): the longest an epoch's jobs are retried. RECORD_TTL_DAYS must exceed it.
  retry_horizon_secs = sum([for q, c in local.queues : local.visibility[q] * local.fn[c.consumer].max_receive_count])

  queue_name = { for q, c in local.queues : q => "${var.prefix}-${q}${c.fifo ? ".fifo" : ""}" }
  dlq_name   = { for q, c in local.queues : q => "${var.prefix}-${q}-dlq${c.fifo ? ".fifo" : ""}" }

  anchor_group_id = "${var.prefix}-anchor"

  ipfs_api_url = var.ipfs.kubo_on_ecs ? "http://${aws_lb.kubo[0].dns_name}:5001" : var.ipfs.api_url

  # Environment every pipeline function reads (handlers/src/config.rs, adapters/aws/src/lib.rs,
  # adapters/ipfs/src/lib.rs, chain/src/config.rs). Unset optional settings are left out so the code's defaults apply.
  # The CloudWatch namespace of the functions' EMF metrics (lambdas/src/emf.rs; monitoring.tf).
  metric_namespace = "Sequencer/${var.prefix}"

  pipeline_env = { for k, v in {
    SEQ_PREFIX                  = var.prefix
    DATA_MARKET_ADDRESS         = var.data_market_address
    PROTOCOL_STATE_ADDRESS      = var.protocol_state_address
    CHAIN_ID                    = tostring(var.chain_id)
    RPC_URL                     = var.rpc_url
    IPFS_API_URL                = local.ipfs_api_url
    IPFS_TIMEOUT_MS             = var.ipfs.timeout_ms == null ? null : tostring(var.ipfs.timeout_ms)
    IPFS_CAT_TIMEOUT_MS         = var.ipfs.cat_timeout_ms == null ? null : tostring(var.ipfs.cat_timeout_ms)
    MAX_SUBMISSIONS_PER_SLOT    = var.pipeline.max_submissions_per_slot == null ? null : tostring(var.pipeline.max_submissions_per_slot)
    FULL_NODE_ADDRESSES         = length(var.pipeline.full_node_addresses) == 0 ? null : join(",", var.pipeline.full_node_addresses)
    CLOSE_GRACE_BLOCKS          = var.pipeline.close_grace_blocks == null ? null : tostring(var.pipeline.close_grace_blocks)
    BATCH_SIZE                  = var.pipeline.batch_size == null ? null : tostring(var.pipeline.batch_size)
    MAX_BATCH_BYTES             = var.pipeline.max_batch_bytes == null ? null : tostring(var.pipeline.max_batch_bytes)
    MAX_BATCH_GAS               = var.pipeline.max_batch_gas == null ? null : tostring(var.pipeline.max_batch_gas)
    MIN_SUBMISSIONS_PER_PROJECT = var.pipeline.min_submissions_per_project == null ? null : tostring(var.pipeline.min_submissions_per_project)
    RECORD_TTL_DAYS             = var.pipeline.record_ttl_days == null ? null : tostring(var.pipeline.record_ttl_days)
    RETRY_HORIZON_SECS          = tostring(local.retry_horizon_secs)
    CONFIRMATIONS               = var.pipeline.confirmations == null ? null : tostring(var.pipeline.confirmations)
    ANCHOR_GROUP_ID             = local.anchor_group_id
    METRICS_NAMESPACE           = local.metric_namespace
    RUST_LOG                    = var.pipeline.rust_log
  } : k => v if v != null }

  # The signer of each signing function (anchor, epoch-manager): a KMS key id, or the private
  # key read from its secret once signer_secret_ready (chain/src/config.rs SignerSource).
  signer_env = {
    for f in local.signing_functions : f => (
      var.signer_backend == "kms" ? { KMS_KEY_ID = aws_kms_key.signer[f].arn } :
      var.signer_secret_ready ? { SIGNER_PRIVATE_KEY = data.aws_secretsmanager_secret_version.signer[f].secret_string } : {}
    )
  }

  # The epoch manager reads only the chain client's settings plus its own
  # (lambdas/src/lib.rs epoch_manager_from_env).
  epoch_manager_env = { for k, v in {
    RPC_URL                = var.rpc_url
    PROTOCOL_STATE_ADDRESS = var.protocol_state_address
    DATA_MARKET_ADDRESS    = var.data_market_address
    CHAIN_ID               = tostring(var.chain_id)
    CONFIRMATIONS          = var.pipeline.confirmations == null ? null : tostring(var.pipeline.confirmations)
    FINALITY_OFFSET        = var.epoch_manager.finality_offset == null ? null : tostring(var.epoch_manager.finality_offset)
    EPOCH_MANAGER_POLL_MS  = var.epoch_manager.poll_ms == null ? null : tostring(var.epoch_manager.poll_ms)
    CATCH_UP               = var.epoch_manager.catch_up
    CATCH_UP_MAX_PER_SEC   = var.epoch_manager.catch_up_max_per_sec == null ? null : tostring(var.epoch_manager.catch_up_max_per_sec)
    RELEASE_TIMEOUT_SECS   = var.epoch_manager.release_timeout_secs == null ? null : tostring(var.epoch_manager.release_timeout_secs)
    SOURCE_RPC_URL         = var.epoch_manager.source_rpc_url
    RUST_LOG               = var.pipeline.rust_log
  } : k => v if v != null }

  # The status page's settings (api/src/config.rs); unset ones keep the code's defaults.
  status_env = { for k, v in {
    STATUS_EXPLORER_TX_URL  = var.proof.explorer_tx_url
    STATUS_IPFS_GATEWAY_URL = var.proof.ipfs_gateway_url
    STATUS_POLL_SECS        = var.proof.poll_secs == null ? null : tostring(var.proof.poll_secs)
  } : k => v if v != null }

  function_env = {
    verify = local.pipeline_env
    # The close watermark waits at most verify's visibility timeout plus a minute: one
    # redelivery of a submission that met a transient failure still counts (docs/protocol.md §4).
    tick = merge(local.pipeline_env,
      { WATERMARK_MAX_WAIT_MS = tostring((local.fn.verify.timeout * local.fn.verify.visibility_multiplier + 60) * 1000) },
    var.pipeline.tick_poll_ms == null ? {} : { TICK_POLL_MS = tostring(var.pipeline.tick_poll_ms) })
    finalize        = local.pipeline_env
    anchor          = merge(local.pipeline_env, lookup(local.signer_env, "anchor", {}), { ANCHOR_MAX_RECEIVES = tostring(local.fn.anchor.max_receive_count) })
    "epoch-manager" = merge(local.epoch_manager_env, lookup(local.signer_env, "epoch-manager", {}))
    proof           = merge(local.pipeline_env, local.status_env)
  }

  signing_functions = toset([for f in ["anchor", "epoch-manager"] : f if contains(local.enabled_functions, f)])
  scheduled         = toset([for f in ["tick", "epoch-manager"] : f if contains(local.enabled_functions, f)])
}

# One instance of this module = one data market. Two markets are two instances with two
# prefixes; they share nothing but the AWS account (and, if you pass the same ones, the VPC and
# subnets).

# ------------------------------------------------------------------------------ naming

variable "prefix" {
  description = "SEQ_PREFIX: every queue, table, function and key is named <prefix>-<name>, exactly as localstack/resources.py and the adapters (adapters/aws/src/lib.rs) build the names. Unique per data market in an account and region."
  type        = string
  validation {
    # Load balancer and target group names are at most 32 chars incl. '-kubo-api' (9).
    condition     = can(regex("^[a-z0-9][a-z0-9-]{0,22}$", var.prefix))
    error_message = "prefix: 1-23 chars of a-z, 0-9 and '-', starting with a letter or digit (load balancer names are at most 32 chars)."
  }
}

variable "bucket_suffix" {
  description = "Appended to the S3 bucket name <prefix>-batches (the name localstack/resources.py uses) when that name is taken in S3's global namespace, e.g. \"-123456789012\"."
  type        = string
  default     = ""
}

variable "tags" {
  description = "Tags put on every resource (merged over the module's own `sequencer:prefix` tag)."
  type        = map(string)
  default     = {}
}

# ------------------------------------------------------------------------------ protocol

variable "data_market_address" {
  description = "DATA_MARKET_ADDRESS: the data market this instance sequences (0x-prefixed, 20 bytes)."
  type        = string
  validation {
    condition     = can(regex("^0x[0-9a-fA-F]{40}$", var.data_market_address))
    error_message = "data_market_address must be 0x followed by 40 hex digits."
  }
}

variable "protocol_state_address" {
  description = "PROTOCOL_STATE_ADDRESS: the ProtocolState contract (EIP-712 verifyingContract)."
  type        = string
  validation {
    condition     = can(regex("^0x[0-9a-fA-F]{40}$", var.protocol_state_address))
    error_message = "protocol_state_address must be 0x followed by 40 hex digits."
  }
}

variable "chain_id" {
  description = "CHAIN_ID: protocol chain id (EIP-712 domain; checked against the node's)."
  type        = number
}

variable "rpc_url" {
  description = "RPC_URL: JSON-RPC endpoint of the protocol chain. Often carries an API key, hence sensitive (it still lands in the functions' environment, encrypted with the module's KMS key)."
  type        = string
  sensitive   = true
}

variable "pipeline" {
  description = "Pipeline settings passed to every function (handlers/src/config.rs, chain/src/config.rs); null leaves the code's default."
  type = object({
    max_submissions_per_slot    = optional(number) # MAX_SUBMISSIONS_PER_SLOT, default 2
    full_node_addresses         = optional(list(string), [])
    close_grace_blocks          = optional(number) # CLOSE_GRACE_BLOCKS, default 2
    batch_size                  = optional(number) # BATCH_SIZE, default 500 (a ceiling: gas and bytes cut first)
    max_batch_bytes             = optional(number) # MAX_BATCH_BYTES, default 262144
    max_batch_gas               = optional(number) # MAX_BATCH_GAS, default 7300000
    min_submissions_per_project = optional(number) # MIN_SUBMISSIONS_PER_PROJECT, default 1
    record_ttl_days             = optional(number) # RECORD_TTL_DAYS, default 30
    confirmations               = optional(number) # CONFIRMATIONS, default 2
    tick_poll_ms                = optional(number) # TICK_POLL_MS (tick only), default 1000
    rust_log                    = optional(string) # RUST_LOG: tracing directives that replace log_level's filter, e.g. "info,sequencer_handlers=debug"
  })
  default = {}
}

variable "function_env" {
  description = "Extra environment per function name (verify, tick, finalize, anchor, epoch-manager, proof), e.g. { anchor = { GAS_LIMIT_CEILING = \"20000000\" } }. Wins over the module's values."
  type        = map(map(string))
  default     = {}
}

# ------------------------------------------------------------------------------ artifacts

variable "lambda_zip_dir" {
  description = "Folder with one <function>/bootstrap.zip per function, as `cargo lambda build --release --arm64 --output-format zip` writes them (target/lambda). Build with `--features aws-kms` when signer_backend = \"kms\" (infra/build.sh does)."
  type        = string
}

variable "lambda_architecture" {
  description = "Architecture of the zips: arm64 (Graviton, cheaper per GB-second; the default) or x86_64 (infra/build.sh --x86_64, where no aarch64 Rust target is available)."
  type        = string
  default     = "arm64"
  validation {
    condition     = contains(["arm64", "x86_64"], var.lambda_architecture)
    error_message = "lambda_architecture is arm64 or x86_64."
  }
}

variable "ingress_image" {
  description = "Container image of the ingress (ingress/Dockerfile), e.g. <account>.dkr.ecr.<region>.amazonaws.com/sequencer-ingress:<tag>. Pin a digest in production."
  type        = string
}

# ------------------------------------------------------------------------------ functions

variable "log_level" {
  description = "Application log level of every function: Lambda's logging_config application_log_level, which the binaries read (AWS_LAMBDA_LOG_LEVEL) through lambda_runtime's tracing setup; logs are JSON (log_format JSON). TRACE, DEBUG, INFO, WARN, ERROR or FATAL. pipeline.rust_log, when set, replaces this filter with tracing directives."
  type        = string
  default     = "INFO"
  validation {
    condition     = contains(["TRACE", "DEBUG", "INFO", "WARN", "ERROR", "FATAL"], var.log_level)
    error_message = "log_level is one of TRACE, DEBUG, INFO, WARN, ERROR, FATAL."
  }
}

variable "functions" {
  description = "Per-function sizing. Keys: verify, tick, finalize, anchor, epoch-manager, proof. Unset fields keep the module's defaults (locals.tf: function_defaults)."
  type = map(object({
    memory_size           = optional(number)
    timeout               = optional(number)
    reserved_concurrency  = optional(number) # -1: unreserved
    batch_size            = optional(number) # SQS-driven functions only
    batching_window_secs  = optional(number)
    maximum_concurrency   = optional(number) # event source mapping scaling_config, >= 2
    log_retention_days    = optional(number)
    visibility_multiplier = optional(number) # queue visibility timeout = multiplier x timeout
    max_receive_count     = optional(number) # deliveries before the DLQ
  }))
  default = {}
  validation {
    condition     = alltrue([for k in keys(var.functions) : contains(["verify", "tick", "finalize", "anchor", "epoch-manager", "proof"], k)])
    error_message = "functions: keys are verify, tick, finalize, anchor, epoch-manager, proof."
  }
}

variable "schedule_expression" {
  description = "EventBridge Scheduler expression of tick and epoch-manager (each loops inside its invocation until shortly before its timeout)."
  type        = string
  default     = "rate(1 minute)"
}

variable "epoch_manager" {
  description = "The epoch-manager function (lambdas/src/bin/epoch-manager.rs over chain/src/epoch_manager.rs): releases the market's epochs with its own key, on the schedule, reserved concurrency 1. null fields keep the code's defaults."
  type = object({
    enabled              = optional(bool, true)
    finality_offset      = optional(number) # FINALITY_OFFSET, default 2
    poll_ms              = optional(number) # EPOCH_MANAGER_POLL_MS, default 500
    catch_up             = optional(string) # CATCH_UP: in-order (default) or skip
    catch_up_max_per_sec = optional(number) # CATCH_UP_MAX_PER_SEC, default 5
    release_timeout_secs = optional(number) # RELEASE_TIMEOUT_SECS, default 20 (the loop stops this long before the deadline)
    source_rpc_url       = optional(string) # SOURCE_RPC_URL: the chain epochs follow (default: the protocol chain)
    max_release_lag_secs = optional(number, 120)
  })
  default = {}
  validation {
    condition     = var.epoch_manager.catch_up == null || contains(["in-order", "skip"], coalesce(var.epoch_manager.catch_up, "in-order"))
    error_message = "epoch_manager.catch_up is in-order or skip."
  }
}

variable "proof" {
  description = <<-EOT
    The proof/status function (api/src/lib.rs over handlers/src/query/, binary `proof`): inclusion proofs,
    epoch status and the status page behind a Lambda function URL. Off by default. Who can read it
    (docs/deploy.md, "Opening the status page"):
      access = "iam"    (default) the function URL takes SigV4-signed requests only; the output
                        proof_reader_policy_json is the IAM policy to give readers.
      access = "public" a CloudFront distribution in front of the URL, which stays AWS_IAM and is
                        reached only by CloudFront (origin access control): anyone can read, final
                        answers (anchored epochs: `Cache-Control: max-age=31536000, immutable`) are
                        served from CloudFront's cache, nothing else is cached (`no-store`), and a
                        WAF rate-based rule blocks an address past rate_limit requests per 5 minutes.
    auth_type = "NONE" opens the function URL itself with neither cache nor rate limit: prefer
    access = "public".
    The status page (api/src/config.rs): explorer_tx_url links each transaction to a block
    explorer of the protocol chain ("https://…/tx/{tx}"; unset: hashes without links),
    ipfs_gateway_url links each batch to an IPFS gateway (default "https://ipfs.io/ipfs/{cid}"),
    poll_secs is how often an open page asks for the live summary (default 5, 1..300).
  EOT
  type = object({
    enabled              = optional(bool, false)
    access               = optional(string, "iam")
    auth_type            = optional(string, "AWS_IAM")
    allow_origins        = optional(list(string), [])
    reserved_concurrency = optional(number, 20)
    rate_limit           = optional(number, 1500)
    price_class          = optional(string, "PriceClass_100")
    explorer_tx_url      = optional(string)
    ipfs_gateway_url     = optional(string)
    poll_secs            = optional(number)
  })
  default = {}
  validation {
    condition     = contains(["AWS_IAM", "NONE"], var.proof.auth_type)
    error_message = "proof.auth_type is AWS_IAM or NONE."
  }
  validation {
    condition     = contains(["iam", "public"], var.proof.access)
    error_message = "proof.access is iam or public."
  }
  validation {
    condition     = var.proof.access != "public" || var.proof.auth_type == "AWS_IAM"
    error_message = "proof.access = public keeps the function URL AWS_IAM (CloudFront signs its requests): leave proof.auth_type unset."
  }
  validation {
    condition     = var.proof.rate_limit >= 10 && var.proof.rate_limit <= 2000000000
    error_message = "proof.rate_limit is requests per address per 5 minutes, 10 to 2e9 (WAF's bounds)."
  }
  validation {
    condition     = contains(["PriceClass_100", "PriceClass_200", "PriceClass_All"], var.proof.price_class)
    error_message = "proof.price_class is PriceClass_100, PriceClass_200 or PriceClass_All."
  }
  validation {
    condition     = var.proof.explorer_tx_url == null || can(regex("^(https?://|/[^/]).*\\{tx\\}", coalesce(var.proof.explorer_tx_url, "-")))
    error_message = "proof.explorer_tx_url is an http(s) URL (or a /path) holding {tx}."
  }
  validation {
    condition     = var.proof.ipfs_gateway_url == null || can(regex("^(https?://|/[^/]).*\\{cid\\}", coalesce(var.proof.ipfs_gateway_url, "-")))
    error_message = "proof.ipfs_gateway_url is an http(s) URL (or a /path) holding {cid}."
  }
  validation {
    condition     = var.proof.poll_secs == null || (coalesce(var.proof.poll_secs, 5) >= 1 && coalesce(var.proof.poll_secs, 5) <= 300)
    error_message = "proof.poll_secs is 1 to 300."
  }
}

# ------------------------------------------------------------------------------ keys

variable "signer_backend" {
  description = "Where the anchor's (and epoch manager's) signing keys live: \"kms\" (ECC_SECG_P256K1 keys the module creates; the key never leaves KMS; functions get KMS_KEY_ID) or \"secrets_manager\" (a hex private key you put in a secret the module creates; Terraform reads it and passes SIGNER_PRIVATE_KEY: the key then sits in the state and the function configuration, so prefer kms)."
  type        = string
  default     = "kms"
  validation {
    condition     = contains(["kms", "secrets_manager"], var.signer_backend)
    error_message = "signer_backend is kms or secrets_manager."
  }
}

variable "signer_secret_ready" {
  description = "signer_backend = secrets_manager only: set true once the secrets hold a value (aws secretsmanager put-secret-value); until then no function reads them."
  type        = bool
  default     = false
}

variable "kms_deletion_window_days" {
  description = "Waiting period before a destroyed KMS key is deleted (a deleted signing key cannot be recovered)."
  type        = number
  default     = 30
}

# ------------------------------------------------------------------------------ network / ingress

variable "vpc_id" {
  description = "VPC of the ingress (and of Kubo, if enabled)."
  type        = string
}

variable "public_subnet_ids" {
  description = "Subnets of the internet-facing NLB (one per AZ)."
  type        = list(string)
}

variable "private_subnet_ids" {
  description = "Subnets of the ingress tasks (and Kubo); they need a route to SQS (NAT or a VPC endpoint) and to ECR/Secrets Manager/CloudWatch Logs."
  type        = list(string)
}

variable "lambda_subnet_ids" {
  description = "If set, the functions run in these subnets (needed to reach a Kubo that is only reachable inside the VPC, i.e. ipfs.kubo_on_ecs = true). They need NAT to reach the RPC and AWS APIs."
  type        = list(string)
  default     = []
}

variable "ingress" {
  description = "Ingress service (ingress/README.md lists every INGRESS_* setting; pass others in env)."
  type = object({
    cpu                       = optional(number, 1024)
    memory                    = optional(number, 2048)
    cpu_architecture          = optional(string, "X86_64") # ARM64 if the image is built for arm64
    min_count                 = optional(number, 2)
    max_count                 = optional(number, 10)
    cpu_target_percent        = optional(number, 60)
    flows_per_task_target     = optional(number, 3000) # NLB active flows per task; below INGRESS_MAX_CONNECTIONS (4096), so tasks scale out before refusing
    quic                      = optional(bool, true)
    drain_timeout_secs        = optional(number, 20) # INGRESS_DRAIN_TIMEOUT_SECS
    stop_timeout_margin_secs  = optional(number, 10)
    allowed_cidrs             = optional(list(string), ["0.0.0.0/0"])
    deregistration_delay_secs = optional(number, 30)
    env                       = optional(map(string), {})
    log_retention_days        = optional(number, 30)
    gossip                    = optional(bool, true)                                # INGRESS_GOSSIP: gossipsub beside /collect, same port
    gossip_topic_prefix       = optional(string, "/powerloom/snapshot-submissions") # INGRESS_GOSSIP_TOPIC_PREFIX
    gossip_bootstrap          = optional(list(string), [])                          # INGRESS_GOSSIP_BOOTSTRAP (/…/p2p/<id>); none: the ingress is the bootstrap node
    gossip_kad_mode           = optional(string, "server")                          # INGRESS_GOSSIP_KAD_MODE
    tally_interval_ms         = optional(number, 1000)                              # INGRESS_TALLY_INTERVAL_MS: tallies of submissions taken in while they change (close watermark)
    tally_heartbeat_ms        = optional(number, 5000)                              # INGRESS_TALLY_HEARTBEAT_MS: a tally at least this often; 0 turns tallies off
  })
  default = {}
  validation {
    condition     = contains(["client", "server"], var.ingress.gossip_kad_mode)
    error_message = "ingress.gossip_kad_mode is client or server."
  }
  validation {
    condition     = var.ingress.drain_timeout_secs + var.ingress.stop_timeout_margin_secs <= 120
    error_message = "Fargate's stopTimeout is at most 120 s: drain_timeout_secs + stop_timeout_margin_secs must be <= 120."
  }
  validation {
    condition     = var.ingress.tally_interval_ms >= 0 && var.ingress.tally_heartbeat_ms >= 0
    error_message = "ingress.tally_interval_ms and ingress.tally_heartbeat_ms are >= 0 (a zero heartbeat turns tallies off)."
  }
  validation {
    condition     = var.ingress.stop_timeout_margin_secs >= 5
    error_message = "stop_timeout_margin_secs must be >= 5 so the drain deadline (and its spill) ends before ECS kills the task."
  }
}

variable "ingress_host_key_secret_arn" {
  description = "Existing Secrets Manager secret holding the ingress libp2p host key (hex of the protobuf-encoded keypair, INGRESS_KEY). Empty: the module creates an empty secret you fill (docs in infra/terraform/README.md)."
  type        = string
  default     = ""
}

# ------------------------------------------------------------------------------ IPFS

variable "ipfs" {
  description = "IPFS_API_URL: a Kubo node you run or a pinning service's Kubo-compatible RPC (api_url), or kubo_on_ecs = true for a Kubo service on ECS Fargate with its repository on EFS (api_url is then ignored)."
  type = object({
    api_url        = optional(string, "")
    timeout_ms     = optional(number) # IPFS_TIMEOUT_MS
    cat_timeout_ms = optional(number) # IPFS_CAT_TIMEOUT_MS
    kubo_on_ecs    = optional(bool, false)
    kubo_image     = optional(string, "ipfs/kubo:v0.32.1")
    kubo_cpu       = optional(number, 1024)
    kubo_memory    = optional(number, 4096)
  })
  default = {}
  validation {
    condition     = var.ipfs.kubo_on_ecs || var.ipfs.api_url != ""
    error_message = "Set ipfs.api_url, or ipfs.kubo_on_ecs = true."
  }
}

# ------------------------------------------------------------------------------ alarms

variable "alarm_topic_arns" {
  description = "SNS topics notified by every alarm (alarm and OK)."
  type        = list(string)
  default     = []
}

variable "alarms" {
  description = "Alarm thresholds."
  type = object({
    no_anchor_minutes       = optional(number, 15)  # no epoch recorded anchored for this long
    close_to_anchored_secs  = optional(number, 600) # p90 of an epoch's close -> anchored over 5 min
    oldest_message_secs     = optional(number, 300)
    submissions_oldest_secs = optional(number, 60)
    error_threshold         = optional(number, 1)
  })
  default = {}
}

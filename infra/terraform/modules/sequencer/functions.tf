# ------------------------------------------------------------------------------ Lambda functions
# provided.al2023 on arm64, from the zips `cargo lambda build --release --arm64 --output-format
# zip` writes to target/lambda/<bin>/bootstrap.zip (infra/build.sh).

resource "aws_cloudwatch_log_group" "fn" {
  for_each = local.enabled_functions
  #checkov:skip=CKV_AWS_338:Retention is per function (functions.*.log_retention_days, 30-90 days by default): a year of verify logs costs more than the pipeline; raise it where compliance asks.
  name              = "/aws/lambda/${var.prefix}-${each.key}"
  retention_in_days = local.fn[each.key].log_retention_days
  kms_key_id        = aws_kms_key.data.arn
  tags              = local.tags
}

resource "aws_lambda_function" "fn" {
  for_each = local.enabled_functions
  #checkov:skip=CKV_AWS_116:SQS-driven functions have their queue's DLQ (redrive); tick and epoch-manager are scheduled with no retries (the next minute is the retry); proof is synchronous.
  #checkov:skip=CKV_AWS_117:The functions call public RPC/IPFS endpoints and AWS APIs; they run in a VPC when lambda_subnet_ids is set (needed only for a VPC-internal Kubo).
  #checkov:skip=CKV_AWS_272:Code signing needs an AWS Signer profile in the operator's release process; the zips are built reproducibly by infra/build.sh.

  function_name = "${var.prefix}-${each.key}"
  role          = aws_iam_role.fn[each.key].arn
  runtime       = "provided.al2023"
  architectures = [var.lambda_architecture]
  handler       = "bootstrap"
  filename      = "${var.lambda_zip_dir}/${each.key}/bootstrap.zip"
  # Redeploy exactly when the zip changes.
  source_code_hash = filebase64sha256("${var.lambda_zip_dir}/${each.key}/bootstrap.zip")

  memory_size                    = local.fn[each.key].memory_size
  timeout                        = local.fn[each.key].timeout
  reserved_concurrent_executions = local.fn[each.key].reserved_concurrency
  kms_key_arn                    = aws_kms_key.data.arn

  # Every chain call (retries and backoffs included) ends within a quarter of the function's
  # timeout, at most a minute (RPC_CALL_BUDGET_MS, chain/src/config.rs): an RPC outage fails a
  # call with a retryable error instead of outliving the invocation (verify: 7.5 s of 30 s).
  environment {
    variables = merge(
      local.function_env[each.key],
      { RPC_CALL_BUDGET_MS = tostring(min(60000, local.fn[each.key].timeout * 250)) },
      lookup(var.function_env, each.key, {}),
    )
  }

  # JSON logs at var.log_level: Lambda sets AWS_LAMBDA_LOG_FORMAT and AWS_LAMBDA_LOG_LEVEL, which
  # the binaries' tracing setup (lambda_runtime::tracing::init_default_subscriber) follows; the
  # EMF metric lines are JSON already.
  logging_config {
    log_format            = "JSON"
    application_log_level = var.log_level
    system_log_level      = "WARN"
    log_group             = aws_cloudwatch_log_group.fn[each.key].name
  }

  tracing_config {
    mode = "Active"
  }

  dynamic "vpc_config" {
    for_each = length(var.lambda_subnet_ids) > 0 ? ["vpc"] : []
    content {
      subnet_ids         = var.lambda_subnet_ids
      security_group_ids = [aws_security_group.lambda[0].id]
    }
  }

  tags       = local.tags
  depends_on = [aws_iam_role_policy.fn]
}

resource "aws_iam_role_policy_attachment" "xray" {
  for_each   = local.enabled_functions
  role       = aws_iam_role.fn[each.key].name
  policy_arn = "arn:${local.partition}:iam::aws:policy/AWSXRayDaemonWriteAccess"
}

resource "aws_security_group" "lambda" {
  count       = length(var.lambda_subnet_ids) > 0 ? 1 : 0
  name        = "${var.prefix}-functions"
  description = "Sequencer functions: egress only (RPC, IPFS, AWS APIs)"
  vpc_id      = var.vpc_id
  egress {
    description = "TCP to the RPC, IPFS and AWS endpoints (RPC and Kubo ports vary by provider)"
    from_port   = 0
    to_port     = 65535
    protocol    = "tcp"
    cidr_blocks = ["0.0.0.0/0"]
  }
  tags = local.tags
}

# ------------------------------------------------------------------------------ SQS triggers
# Partial batch failures: the handlers return batchItemFailures (ReportBatchItemFailures), so one
# bad message is redelivered (and after max_receive_count goes to the DLQ) without its batch.

resource "aws_lambda_event_source_mapping" "sqs" {
  for_each = local.queues

  function_name                      = aws_lambda_function.fn[each.value.consumer].arn
  event_source_arn                   = aws_sqs_queue.main[each.key].arn
  batch_size                         = local.fn[each.value.consumer].batch_size
  maximum_batching_window_in_seconds = each.value.fifo ? null : local.fn[each.value.consumer].batching_window_secs
  function_response_types            = ["ReportBatchItemFailures"]

  # Lambda's own ceiling on concurrent invocations from this queue (>= 2). For anchor the one
  # FIFO message group and reserved concurrency 1 keep it to one writer per key.
  scaling_config {
    maximum_concurrency = local.fn[each.value.consumer].maximum_concurrency
  }

  tags = local.tags

  lifecycle {
    precondition {
      condition     = each.value.fifo ? local.fn[each.value.consumer].batch_size <= 10 : (local.fn[each.value.consumer].batch_size <= 10 || local.fn[each.value.consumer].batching_window_secs >= 1)
      error_message = "SQS event source mappings: FIFO batches are at most 10; standard batches above 10 need batching_window_secs >= 1."
    }
    precondition {
      condition     = local.fn[each.value.consumer].maximum_concurrency >= 2 && local.fn[each.value.consumer].maximum_concurrency <= 1000
      error_message = "maximum_concurrency of an SQS event source mapping is 2..1000."
    }
  }
}

# ------------------------------------------------------------------------------ schedules
# tick and epoch-manager: every minute; each loops inside its invocation until shortly before
# its timeout. No retries of a failed run: the next minute is the retry.

data "aws_iam_policy_document" "assume_scheduler" {
  statement {
    actions = ["sts:AssumeRole"]
    principals {
      type        = "Service"
      identifiers = ["scheduler.amazonaws.com"]
    }
    condition {
      test     = "StringEquals"
      variable = "aws:SourceAccount"
      values   = [local.account_id]
    }
  }
}

resource "aws_iam_role" "scheduler" {
  name               = "${var.prefix}-scheduler"
  assume_role_policy = data.aws_iam_policy_document.assume_scheduler.json
  tags               = local.tags
}

data "aws_iam_policy_document" "scheduler" {
  statement {
    actions   = ["lambda:InvokeFunction"]
    resources = [for f in local.scheduled : aws_lambda_function.fn[f].arn]
  }
  statement {
    # The schedules are encrypted with the data key.
    actions   = ["kms:Decrypt"]
    resources = [aws_kms_key.data.arn]
  }
}

resource "aws_iam_role_policy" "scheduler" {
  name   = "${var.prefix}-scheduler"
  role   = aws_iam_role.scheduler.id
  policy = data.aws_iam_policy_document.scheduler.json
}

resource "aws_scheduler_schedule_group" "g" {
  name = var.prefix
  tags = local.tags
}

resource "aws_scheduler_schedule" "fn" {
  for_each = local.scheduled

  name                = "${var.prefix}-${each.key}"
  group_name          = aws_scheduler_schedule_group.g.name
  schedule_expression = var.schedule_expression
  kms_key_arn         = aws_kms_key.data.arn

  flexible_time_window {
    mode = "OFF"
  }

  target {
    arn      = aws_lambda_function.fn[each.key].arn
    role_arn = aws_iam_role.scheduler.arn
    input    = jsonencode({ source = "schedule", function = each.key })
    retry_policy {
      maximum_retry_attempts       = 0
      maximum_event_age_in_seconds = 60
    }
  }
}

# Scheduler invokes asynchronously. An invocation throttled because the previous minute's still
# runs (reserved concurrency 1) is retried by Lambda until it can run, for at most 60 s; a
# failed one is not retried (the next minute is).
resource "aws_lambda_function_event_invoke_config" "scheduled" {
  for_each                     = local.scheduled
  function_name                = aws_lambda_function.fn[each.key].function_name
  maximum_retry_attempts       = 0
  maximum_event_age_in_seconds = 60
}

# ------------------------------------------------------------------------------ proof URL

resource "aws_lambda_function_url" "proof" {
  count = var.proof.enabled ? 1 : 0
  #checkov:skip=CKV_AWS_258:auth_type follows var.proof.auth_type (default AWS_IAM); NONE is the operator's explicit choice for a public read-only proof API.
  function_name      = aws_lambda_function.fn["proof"].function_name
  authorization_type = var.proof.auth_type
  cors {
    allow_origins = var.proof.allow_origins
    allow_methods = ["GET"]
    max_age       = 3600
  }
}

# A public URL (auth_type NONE) needs a resource policy letting anyone call the URL. (AWS may
# also ask for lambda:InvokeFunction with the lambda:InvokedViaFunctionUrl condition, which
# aws_lambda_permission in provider 6.25.0 cannot express: add it by hand if AWS refuses.)
resource "aws_lambda_permission" "proof_url_public" {
  count = var.proof.enabled && var.proof.auth_type == "NONE" ? 1 : 0
  #checkov:skip=CKV_AWS_301:Public on purpose: the operator chose proof.auth_type = NONE for a read-only proof API.
  statement_id           = "PublicFunctionUrl"
  action                 = "lambda:InvokeFunctionUrl"
  function_name          = aws_lambda_function.fn["proof"].function_name
  principal              = "*"
  function_url_auth_type = "NONE"
}

# ------------------------------------------------------------------------------ metrics
# The functions write their metrics as CloudWatch EMF lines (lambdas/src/emf.rs): the catalogue of
# handlers/src/metrics.rs, in namespace local.metric_namespace (METRICS_NAMESPACE, locals.tf),
# every series with the dimension `market` (the data market, lowercase hex) and its own labels as
# further dimensions (`reason`, `code`). A query names all of a series' dimensions, so the alarms
# and widgets below give `market` = local.metric_market; two markets in one account never mix.
# check/drift.py checks that every metric read here is one the code records, with the same
# dimensions.
#
# Only the epoch manager still has log metric filters: it lives in the chain crate, outside the
# catalogue, and logs each release with its lag ("released epoch", lag_ms).

locals {
  metric_market = lower(var.data_market_address)
  # [namespace, name, "market", <market>]: a dashboard line of one of the code's series.
  emf_line = { for name in [
    "verify_accepted_total", "tick_epochs_closed_total", "finalize_epochs_total", "anchor_epochs_total",
    "anchor_epochs_failed_total", "anchor_batches_sent_total", "anchor_batches_already_total",
    "anchor_close_to_anchored_seconds", "proof_requests_total",
  ] : name => [local.metric_namespace, name, "market", local.metric_market] }
  # SEARCH over every value of a label: the dimension set names market and the label.
  emf_by_label = {
    rejected      = "SEARCH('{${local.metric_namespace},market,reason} MetricName=\"verify_rejected_total\" market=\"${local.metric_market}\"', 'Sum', 60)"
    dead_lettered = "SEARCH('{${local.metric_namespace},market,reason} MetricName=\"verify_dead_lettered_total\" market=\"${local.metric_market}\"', 'Sum', 60)"
    proof_errors  = "SEARCH('{${local.metric_namespace},market,code} MetricName=\"proof_errors_total\" market=\"${local.metric_market}\"', 'Sum', 60)"
  }
  log_metrics = var.epoch_manager.enabled ? {
    EpochsReleased = { fn = "epoch-manager", pattern = "{ $.fields.message = \"released epoch\" }", value = "1" }
    ReleaseLagMs   = { fn = "epoch-manager", pattern = "{ $.fields.message = \"released epoch\" }", value = "$.fields.lag_ms" }
  } : {}
  alarm_actions = var.alarm_topic_arns
}

resource "aws_cloudwatch_log_metric_filter" "m" {
  for_each       = local.log_metrics
  name           = "${var.prefix}-${each.key}"
  log_group_name = aws_cloudwatch_log_group.fn[each.value.fn].name
  pattern        = each.value.pattern
  metric_transformation {
    name      = each.key
    namespace = local.metric_namespace
    value     = each.value.value
    unit      = each.key == "ReleaseLagMs" ? "Milliseconds" : "Count"
  }
}

# ------------------------------------------------------------------------------ alarms

resource "aws_cloudwatch_metric_alarm" "dlq_depth" {
  for_each            = local.queues
  alarm_name          = "${var.prefix}-${each.key}-dlq-not-empty"
  alarm_description   = "Messages in ${local.dlq_name[each.key]}: inspect them, fix, and redrive (docs in infra/terraform/README.md)."
  namespace           = "AWS/SQS"
  metric_name         = "ApproximateNumberOfMessagesVisible"
  dimensions          = { QueueName = local.dlq_name[each.key] }
  statistic           = "Maximum"
  period              = 60
  evaluation_periods  = 1
  comparison_operator = "GreaterThanThreshold"
  threshold           = 0
  treat_missing_data  = "notBreaching"
  alarm_actions       = local.alarm_actions
  ok_actions          = local.alarm_actions
  tags                = local.tags
}

resource "aws_cloudwatch_metric_alarm" "oldest_message" {
  for_each            = local.queues
  alarm_name          = "${var.prefix}-${each.key}-oldest-message"
  alarm_description   = "The oldest message in ${local.queue_name[each.key]} waits too long: its consumer is failing, throttled or too slow."
  namespace           = "AWS/SQS"
  metric_name         = "ApproximateAgeOfOldestMessage"
  dimensions          = { QueueName = local.queue_name[each.key] }
  statistic           = "Maximum"
  period              = 60
  evaluation_periods  = 3
  comparison_operator = "GreaterThanThreshold"
  threshold           = each.key == "submissions" ? var.alarms.submissions_oldest_secs : var.alarms.oldest_message_secs
  treat_missing_data  = "notBreaching"
  alarm_actions       = local.alarm_actions
  ok_actions          = local.alarm_actions
  tags                = local.tags
}

resource "aws_cloudwatch_metric_alarm" "fn_errors" {
  for_each            = local.enabled_functions
  alarm_name          = "${var.prefix}-${each.key}-errors"
  alarm_description   = "${var.prefix}-${each.key} invocations failed (partial batch failures are not errors; these are crashes, timeouts, cold-start config errors)."
  namespace           = "AWS/Lambda"
  metric_name         = "Errors"
  dimensions          = { FunctionName = aws_lambda_function.fn[each.key].function_name }
  statistic           = "Sum"
  period              = 300
  evaluation_periods  = 1
  comparison_operator = "GreaterThanOrEqualToThreshold"
  threshold           = var.alarms.error_threshold
  treat_missing_data  = "notBreaching"
  alarm_actions       = local.alarm_actions
  ok_actions          = local.alarm_actions
  tags                = local.tags
}

resource "aws_cloudwatch_metric_alarm" "fn_throttles" {
  # tick and epoch-manager are left out: their reserved concurrency of 1 throttles a late
  # scheduled invocation on purpose.
  for_each            = toset([for f in local.enabled_functions : f if !contains(local.scheduled, f)])
  alarm_name          = "${var.prefix}-${each.key}-throttles"
  alarm_description   = "${var.prefix}-${each.key} is throttled: account concurrency or its reserved concurrency is too low."
  namespace           = "AWS/Lambda"
  metric_name         = "Throttles"
  dimensions          = { FunctionName = aws_lambda_function.fn[each.key].function_name }
  statistic           = "Sum"
  period              = 300
  evaluation_periods  = 1
  comparison_operator = "GreaterThanThreshold"
  threshold           = 0
  treat_missing_data  = "notBreaching"
  alarm_actions       = local.alarm_actions
  ok_actions          = local.alarm_actions
  tags                = local.tags
}

resource "aws_cloudwatch_metric_alarm" "ingress_unhealthy" {
  alarm_name          = "${var.prefix}-ingress-unhealthy-hosts"
  alarm_description   = "Ingress tasks fail /readyz (draining or SQS unreachable)."
  namespace           = "AWS/NetworkELB"
  metric_name         = "UnHealthyHostCount"
  dimensions          = { LoadBalancer = aws_lb.ingress.arn_suffix, TargetGroup = aws_lb_target_group.ingress.arn_suffix }
  statistic           = "Maximum"
  period              = 60
  evaluation_periods  = 3
  comparison_operator = "GreaterThanThreshold"
  threshold           = 0
  treat_missing_data  = "notBreaching"
  alarm_actions       = local.alarm_actions
  ok_actions          = local.alarm_actions
  tags                = local.tags
}

resource "aws_cloudwatch_metric_alarm" "ingress_no_healthy" {
  alarm_name          = "${var.prefix}-ingress-no-healthy-hosts"
  alarm_description   = "No ingress task is healthy: collectors cannot submit."
  namespace           = "AWS/NetworkELB"
  metric_name         = "HealthyHostCount"
  dimensions          = { LoadBalancer = aws_lb.ingress.arn_suffix, TargetGroup = aws_lb_target_group.ingress.arn_suffix }
  statistic           = "Minimum"
  period              = 60
  evaluation_periods  = 2
  comparison_operator = "LessThanThreshold"
  threshold           = 1
  treat_missing_data  = "breaching"
  alarm_actions       = local.alarm_actions
  ok_actions          = local.alarm_actions
  tags                = local.tags
}

resource "aws_cloudwatch_metric_alarm" "no_anchor" {
  alarm_name          = "${var.prefix}-no-epoch-anchored"
  alarm_description   = "No epoch recorded anchored for ${var.alarms.no_anchor_minutes} minutes (an epoch without submissions counts too): the tick, finalize or anchor is stuck, or the chain is."
  namespace           = local.metric_namespace
  metric_name         = "anchor_epochs_total"
  dimensions          = { market = local.metric_market }
  statistic           = "Sum"
  period              = 60
  evaluation_periods  = var.alarms.no_anchor_minutes
  datapoints_to_alarm = var.alarms.no_anchor_minutes
  comparison_operator = "LessThanThreshold"
  threshold           = 1
  treat_missing_data  = "breaching"
  alarm_actions       = local.alarm_actions
  ok_actions          = local.alarm_actions
  tags                = local.tags
}

resource "aws_cloudwatch_metric_alarm" "anchor_failed" {
  alarm_name          = "${var.prefix}-anchor-failed"
  alarm_description   = "An epoch went ANCHOR_FAILED (a revert no retry can fix): read the anchor log for the reason."
  namespace           = local.metric_namespace
  metric_name         = "anchor_epochs_failed_total"
  dimensions          = { market = local.metric_market }
  statistic           = "Sum"
  period              = 300
  evaluation_periods  = 1
  comparison_operator = "GreaterThanThreshold"
  threshold           = 0
  treat_missing_data  = "notBreaching"
  alarm_actions       = local.alarm_actions
  ok_actions          = local.alarm_actions
  tags                = local.tags
}

resource "aws_cloudwatch_metric_alarm" "late_after_arrival" {
  alarm_name          = "${var.prefix}-late-after-arrival"
  alarm_description   = "A submission that arrived before its epoch closed was rejected late: verification was delayed past the close (a redelivery, a queue backlog). Raise CLOSE_GRACE_BLOCKS or find the delay in verify's log (docs/protocol.md section 4)."
  namespace           = local.metric_namespace
  metric_name         = "verify_late_after_arrival_total"
  dimensions          = { market = local.metric_market }
  statistic           = "Sum"
  period              = 300
  evaluation_periods  = 1
  comparison_operator = "GreaterThanThreshold"
  threshold           = 0
  treat_missing_data  = "notBreaching"
  alarm_actions       = local.alarm_actions
  ok_actions          = local.alarm_actions
  tags                = local.tags
}

resource "aws_cloudwatch_metric_alarm" "watermark_timeout" {
  alarm_name          = "${var.prefix}-watermark-timeout"
  alarm_description   = "An epoch closed without its watermark: an ingress replica stopped reporting tallies around the window's end, or verify had not decided everything the ingress took in after WATERMARK_MAX_WAIT_MS (docs/protocol.md section 4). Look at the ingress replicas and verify's DLQ and errors."
  namespace           = local.metric_namespace
  metric_name         = "tick_close_watermark_total"
  dimensions          = { market = local.metric_market, outcome = "timeout" }
  statistic           = "Sum"
  period              = 300
  evaluation_periods  = 1
  comparison_operator = "GreaterThanThreshold"
  threshold           = 0
  treat_missing_data  = "notBreaching"
  alarm_actions       = local.alarm_actions
  ok_actions          = local.alarm_actions
  tags                = local.tags
}

resource "aws_cloudwatch_metric_alarm" "close_to_anchored" {
  alarm_name          = "${var.prefix}-close-to-anchored-slow"
  alarm_description   = "Epochs take more than ${var.alarms.close_to_anchored_secs} s (p90) from closing to anchored: finalize or anchor is slow or retrying (IPFS, gas, RPC)."
  namespace           = local.metric_namespace
  metric_name         = "anchor_close_to_anchored_seconds"
  dimensions          = { market = local.metric_market }
  extended_statistic  = "p90"
  period              = 300
  evaluation_periods  = 2
  comparison_operator = "GreaterThanThreshold"
  threshold           = var.alarms.close_to_anchored_secs
  treat_missing_data  = "notBreaching"
  alarm_actions       = local.alarm_actions
  ok_actions          = local.alarm_actions
  tags                = local.tags
}

resource "aws_cloudwatch_metric_alarm" "release_lag" {
  count               = var.epoch_manager.enabled ? 1 : 0
  alarm_name          = "${var.prefix}-epoch-release-lag"
  alarm_description   = "The epoch manager releases epochs more than ${var.epoch_manager.max_release_lag_secs} s after they are due, or has released none for 10 minutes."
  namespace           = local.metric_namespace
  metric_name         = "ReleaseLagMs"
  statistic           = "Maximum"
  period              = 300
  evaluation_periods  = 2
  comparison_operator = "GreaterThanThreshold"
  threshold           = var.epoch_manager.max_release_lag_secs * 1000
  treat_missing_data  = "breaching"
  alarm_actions       = local.alarm_actions
  ok_actions          = local.alarm_actions
  tags                = local.tags
  depends_on          = [aws_cloudwatch_log_metric_filter.m]
}

# ------------------------------------------------------------------------------ dashboard

locals {
  fn_names = [for f in sort(tolist(local.enabled_functions)) : "${var.prefix}-${f}"]
  dash_widgets = [
    { title = "Queue depth (visible)", metrics = [for q in keys(local.queues) : ["AWS/SQS", "ApproximateNumberOfMessagesVisible", "QueueName", local.queue_name[q]]], stat = "Maximum" },
    { title = "Oldest message age (s)", metrics = [for q in keys(local.queues) : ["AWS/SQS", "ApproximateAgeOfOldestMessage", "QueueName", local.queue_name[q]]], stat = "Maximum" },
    { title = "DLQ depth", metrics = [for q in keys(local.queues) : ["AWS/SQS", "ApproximateNumberOfMessagesVisible", "QueueName", local.dlq_name[q]]], stat = "Maximum" },
    { title = "Submissions sent / received", metrics = [["AWS/SQS", "NumberOfMessagesSent", "QueueName", local.queue_name["submissions"]], ["AWS/SQS", "NumberOfMessagesDeleted", "QueueName", local.queue_name["submissions"]]], stat = "Sum" },
    { title = "Submissions accepted / rejected by reason", metrics = [concat(local.emf_line["verify_accepted_total"], [{ label = "accepted" }]), [{ expression = local.emf_by_label.rejected, id = "rejected", label = "" }]], stat = "Sum" },
    { title = "Dead-lettered by reason", metrics = [[{ expression = local.emf_by_label.dead_lettered, id = "dead", label = "" }]], stat = "Sum" },
    { title = "Epochs closed / finalized / anchored / failed", metrics = concat([for n in ["tick_epochs_closed_total", "finalize_epochs_total", "anchor_epochs_total", "anchor_epochs_failed_total"] : local.emf_line[n]], var.epoch_manager.enabled ? [[local.metric_namespace, "EpochsReleased"]] : []), stat = "Sum" },
    { title = "Close -> anchored (s): p50 / p99 / max", metrics = [for st in ["p50", "p99", "Maximum"] : concat(local.emf_line["anchor_close_to_anchored_seconds"], [{ stat = st, label = st }])], stat = "p50" },
    { title = "Batch transactions: sent / found anchored", metrics = [local.emf_line["anchor_batches_sent_total"], local.emf_line["anchor_batches_already_total"]], stat = "Sum" },
    { title = "Proof API: lookups / errors by code", metrics = [local.emf_line["proof_requests_total"], [{ expression = local.emf_by_label.proof_errors, id = "perr", label = "" }]], stat = "Sum" },
    { title = "Epoch release lag (ms)", metrics = var.epoch_manager.enabled ? [[local.metric_namespace, "ReleaseLagMs"]] : [], stat = "Maximum" },
    { title = "Function errors", metrics = [for f in local.fn_names : ["AWS/Lambda", "Errors", "FunctionName", f]], stat = "Sum" },
    { title = "Function throttles", metrics = [for f in local.fn_names : ["AWS/Lambda", "Throttles", "FunctionName", f]], stat = "Sum" },
    { title = "Function duration p99 (ms)", metrics = [for f in local.fn_names : ["AWS/Lambda", "Duration", "FunctionName", f]], stat = "p99" },
    { title = "Concurrent executions", metrics = [for f in local.fn_names : ["AWS/Lambda", "ConcurrentExecutions", "FunctionName", f]], stat = "Maximum" },
    { title = "Ingress: active flows / new flows", metrics = [["AWS/NetworkELB", "ActiveFlowCount", "LoadBalancer", aws_lb.ingress.arn_suffix], ["AWS/NetworkELB", "NewFlowCount", "LoadBalancer", aws_lb.ingress.arn_suffix]], stat = "Sum" },
    { title = "Ingress: healthy / unhealthy tasks", metrics = [["AWS/NetworkELB", "HealthyHostCount", "LoadBalancer", aws_lb.ingress.arn_suffix, "TargetGroup", aws_lb_target_group.ingress.arn_suffix], ["AWS/NetworkELB", "UnHealthyHostCount", "LoadBalancer", aws_lb.ingress.arn_suffix, "TargetGroup", aws_lb_target_group.ingress.arn_suffix]], stat = "Minimum" },
    { title = "Ingress: CPU / memory %", metrics = [["AWS/ECS", "CPUUtilization", "ClusterName", aws_ecs_cluster.this.name, "ServiceName", aws_ecs_service.ingress.name], ["AWS/ECS", "MemoryUtilization", "ClusterName", aws_ecs_cluster.this.name, "ServiceName", aws_ecs_service.ingress.name]], stat = "Average" },
    { title = "DynamoDB write throttle events", metrics = [for t in keys(local.tables) : ["AWS/DynamoDB", "WriteThrottleEvents", "TableName", "${var.prefix}-${t}"]], stat = "Sum" },
  ]
}

resource "aws_cloudwatch_dashboard" "this" {
  dashboard_name = "${var.prefix}-sequencer"
  dashboard_body = jsonencode({
    widgets = [for i, w in local.dash_widgets : {
      type   = "metric"
      x      = (i % 3) * 8
      y      = floor(i / 3) * 6
      width  = 8
      height = 6
      properties = {
        title   = w.title
        region  = local.region
        metrics = w.metrics
        stat    = w.stat
        period  = 60
        view    = "timeSeries"
      }
    } if length(w.metrics) > 0]
  })
}

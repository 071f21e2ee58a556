# ------------------------------------------------------------------------------ ingress: ECS Fargate behind an NLB
# libp2p /collect on 9100 (TCP, and UDP for QUIC), /healthz /readyz /metrics on 9101
# (ingress/README.md). Gossipsub, Kademlia and identify (ingress.gossip, on by default) share the
# /collect listener, so 9100 is also the gossipsub port: no other port, listener or rule. Client
# addresses reach the tasks unchanged (preserve_client_ip on an ip target group), so
# INGRESS_MAX_CONNECTIONS_PER_IP and the gossip per-address caps and rates hold behind the
# balancer; the task security group therefore admits the clients' CIDRs on 9100, and the VPC (the
# NLB's health checks) on 9101. The NLB's name is announced to gossip peers
# (INGRESS_EXTERNAL_ADDRS), so the DHT provider records point at the balancer, not at a task.

data "aws_vpc" "this" {
  id = var.vpc_id
}

locals {
  lb_protocol       = var.ingress.quic ? "TCP_UDP" : "TCP"
  ingress_listen    = var.ingress.quic ? "/ip4/0.0.0.0/tcp/9100,/ip4/0.0.0.0/udp/9100/quic-v1" : "/ip4/0.0.0.0/tcp/9100"
  ingress_stop_secs = var.ingress.drain_timeout_secs + var.ingress.stop_timeout_margin_secs
  ingress_log_group = "/ecs/${var.prefix}-ingress"
  ingress_gossip_env = var.ingress.gossip ? merge({
    INGRESS_GOSSIP_TOPIC_PREFIX = var.ingress.gossip_topic_prefix
    INGRESS_GOSSIP_KAD_MODE     = var.ingress.gossip_kad_mode
    INGRESS_EXTERNAL_ADDRS = join(",", concat(
      ["/dns4/${aws_lb.ingress.dns_name}/tcp/9100"],
      var.ingress.quic ? ["/dns4/${aws_lb.ingress.dns_name}/udp/9100/quic-v1"] : [],
    ))
    }, length(var.ingress.gossip_bootstrap) > 0 ? {
    INGRESS_GOSSIP_BOOTSTRAP = join(",", var.ingress.gossip_bootstrap)
  } : {}) : {}
  ingress_env = merge({
    INGRESS_LISTEN             = local.ingress_listen
    INGRESS_HTTP_LISTEN        = "0.0.0.0:9101"
    INGRESS_SINK               = "sqs"
    INGRESS_MARKETS            = var.data_market_address # edge allow-list: other markets never reach SQS
    INGRESS_QUEUE_URL          = aws_sqs_queue.main["submissions"].url
    INGRESS_DRAIN_TIMEOUT_SECS = tostring(var.ingress.drain_timeout_secs)
    INGRESS_SPILL_PATH         = "/var/lib/ingress/spill/ingress-spill.jsonl"
    INGRESS_LOG                = "info"
    INGRESS_GOSSIP             = tostring(var.ingress.gossip)
    INGRESS_TALLY_INTERVAL_MS  = tostring(var.ingress.tally_interval_ms)
    INGRESS_TALLY_HEARTBEAT_MS = tostring(var.ingress.tally_heartbeat_ms)
    AWS_REGION                 = local.region
  }, local.ingress_gossip_env, var.ingress.env)
}

resource "aws_ecs_cluster" "this" {
  name = var.prefix
  setting {
    name  = "containerInsights"
    value = "enhanced"
  }
  tags = local.tags
}

resource "aws_cloudwatch_log_group" "ingress" {
  #checkov:skip=CKV_AWS_338:Retention is ingress.log_retention_days (30 by default); raise it where compliance asks.
  name              = local.ingress_log_group
  retention_in_days = var.ingress.log_retention_days
  kms_key_id        = aws_kms_key.data.arn
  tags              = local.tags
}

# Execution role: pull the image, write logs, read the host key secret into INGRESS_KEY.
data "aws_iam_policy_document" "assume_ecs_tasks" {
  statement {
    actions = ["sts:AssumeRole"]
    principals {
      type        = "Service"
      identifiers = ["ecs-tasks.amazonaws.com"]
    }
    condition {
      test     = "StringEquals"
      variable = "aws:SourceAccount"
      values   = [local.account_id]
    }
  }
}

resource "aws_iam_role" "ingress_execution" {
  name               = "${var.prefix}-ingress-execution"
  assume_role_policy = data.aws_iam_policy_document.assume_ecs_tasks.json
  tags               = local.tags
}

resource "aws_iam_role_policy_attachment" "ingress_execution" {
  role       = aws_iam_role.ingress_execution.name
  policy_arn = "arn:${local.partition}:iam::aws:policy/service-role/AmazonECSTaskExecutionRolePolicy"
}

data "aws_iam_policy_document" "ingress_execution" {
  statement {
    sid       = "HostKey"
    actions   = ["secretsmanager:GetSecretValue"]
    resources = [local.ingress_key_secret_arn]
  }
  statement {
    sid       = "HostKeyDecrypt"
    actions   = ["kms:Decrypt"]
    resources = [aws_kms_key.data.arn]
    condition {
      test     = "StringEquals"
      variable = "kms:ViaService"
      values   = ["secretsmanager.${local.region}.amazonaws.com"]
    }
  }
}

resource "aws_iam_role_policy" "ingress_execution" {
  name   = "${var.prefix}-ingress-execution"
  role   = aws_iam_role.ingress_execution.id
  policy = data.aws_iam_policy_document.ingress_execution.json
}

# Task role: what the ingress itself calls (ingress/src/sink/sqs.rs): GetQueueUrl,
# GetQueueAttributes (readiness), SendMessageBatch (sqs:SendMessage) on the submissions queue.
resource "aws_iam_role" "ingress_task" {
  name               = "${var.prefix}-ingress"
  assume_role_policy = data.aws_iam_policy_document.assume_ecs_tasks.json
  tags               = local.tags
}

data "aws_iam_policy_document" "ingress_task" {
  statement {
    sid       = "Submissions"
    actions   = ["sqs:SendMessage", "sqs:GetQueueUrl", "sqs:GetQueueAttributes"]
    resources = [aws_sqs_queue.main["submissions"].arn]
  }
}

resource "aws_iam_role_policy" "ingress_task" {
  name   = "${var.prefix}-ingress"
  role   = aws_iam_role.ingress_task.id
  policy = data.aws_iam_policy_document.ingress_task.json
}

resource "aws_ecs_task_definition" "ingress" {
  family                   = "${var.prefix}-ingress"
  requires_compatibilities = ["FARGATE"]
  network_mode             = "awsvpc"
  cpu                      = var.ingress.cpu
  memory                   = var.ingress.memory
  execution_role_arn       = aws_iam_role.ingress_execution.arn
  task_role_arn            = aws_iam_role.ingress_task.arn

  runtime_platform {
    operating_system_family = "LINUX"
    cpu_architecture        = var.ingress.cpu_architecture
  }

  # The spill file lives here; Fargate's ephemeral storage goes with the task, so the drain
  # deadline is what keeps a spill from happening (see README: spill on Fargate).
  volume {
    name = "spill"
  }

  container_definitions = jsonencode([{
    name                   = "ingress"
    image                  = var.ingress_image
    essential              = true
    readonlyRootFilesystem = true
    stopTimeout            = local.ingress_stop_secs
    portMappings = concat(
      [{ containerPort = 9100, protocol = "tcp" }, { containerPort = 9101, protocol = "tcp" }],
      var.ingress.quic ? [{ containerPort = 9100, protocol = "udp" }] : [],
    )
    environment = [for k, v in local.ingress_env : { name = k, value = v }]
    secrets     = [{ name = "INGRESS_KEY", valueFrom = local.ingress_key_secret_arn }]
    mountPoints = [{ sourceVolume = "spill", containerPath = "/var/lib/ingress/spill", readOnly = false }]
    ulimits     = [{ name = "nofile", softLimit = 65536, hardLimit = 65536 }]
    logConfiguration = {
      logDriver = "awslogs"
      options = {
        awslogs-group         = local.ingress_log_group
        awslogs-region        = local.region
        awslogs-stream-prefix = "ingress"
      }
    }
  }])

  tags = local.tags
}

resource "aws_security_group" "ingress" {
  name        = "${var.prefix}-ingress"
  description = "Sequencer ingress tasks: libp2p from collectors (client IPs preserved), health from the VPC"
  vpc_id      = var.vpc_id
  tags        = local.tags
}

resource "aws_vpc_security_group_ingress_rule" "ingress_tcp" {
  for_each          = toset(var.ingress.allowed_cidrs)
  security_group_id = aws_security_group.ingress.id
  description       = "libp2p TCP from collectors"
  ip_protocol       = "tcp"
  from_port         = 9100
  to_port           = 9100
  cidr_ipv4         = each.value
}

resource "aws_vpc_security_group_ingress_rule" "ingress_udp" {
  for_each          = var.ingress.quic ? toset(var.ingress.allowed_cidrs) : toset([])
  security_group_id = aws_security_group.ingress.id
  description       = "libp2p QUIC from collectors"
  ip_protocol       = "udp"
  from_port         = 9100
  to_port           = 9100
  cidr_ipv4         = each.value
}

resource "aws_vpc_security_group_ingress_rule" "ingress_health" {
  security_group_id = aws_security_group.ingress.id
  description       = "NLB health checks (and TCP health of 9100) from inside the VPC"
  ip_protocol       = "tcp"
  from_port         = 9100
  to_port           = 9101
  cidr_ipv4         = data.aws_vpc.this.cidr_block
}

resource "aws_vpc_security_group_egress_rule" "ingress_all" {
  security_group_id = aws_security_group.ingress.id
  description       = "SQS, ECR, Secrets Manager, CloudWatch Logs (HTTPS)"
  ip_protocol       = "tcp"
  from_port         = 443
  to_port           = 443
  cidr_ipv4         = "0.0.0.0/0"
}

resource "aws_lb" "ingress" {
  #checkov:skip=CKV_AWS_91:NLB access logs cover TLS listeners only; these are TCP/UDP pass-through (flow logs are the operator's VPC setting).
  #checkov:skip=CKV2_AWS_20:No HTTP listener: libp2p over TCP/UDP, encrypted end to end by Noise/TLS/QUIC.
  #checkov:skip=CKV2_AWS_28:WAF does not attach to a Network Load Balancer.
  name                             = "${var.prefix}-ingress"
  load_balancer_type               = "network"
  internal                         = false
  subnets                          = var.public_subnet_ids
  enable_cross_zone_load_balancing = true
  enable_deletion_protection       = true
  tags                             = local.tags
}

resource "aws_lb_target_group" "ingress" {
  name                   = "${var.prefix}-ingress"
  port                   = 9100
  protocol               = local.lb_protocol
  target_type            = "ip"
  vpc_id                 = var.vpc_id
  preserve_client_ip     = "true"
  deregistration_delay   = var.ingress.deregistration_delay_secs
  connection_termination = true

  # Ready = not draining and SQS answers (ingress/README.md): a draining task leaves the
  # balancer before it closes its listeners.
  health_check {
    protocol            = "HTTP"
    port                = "9101"
    path                = "/readyz"
    matcher             = "200"
    interval            = 10
    healthy_threshold   = 2
    unhealthy_threshold = 2
    timeout             = 5
  }

  tags = local.tags
}

resource "aws_lb_listener" "ingress" {
  #checkov:skip=CKV_AWS_2:libp2p is not HTTP; connections are encrypted by Noise/TLS (TCP) and QUIC's TLS 1.3 end to end.
  #checkov:skip=CKV_AWS_103:Same: no TLS termination at the balancer (the peer id is the TLS identity).
  load_balancer_arn = aws_lb.ingress.arn
  port              = 9100
  protocol          = local.lb_protocol
  default_action {
    type             = "forward"
    target_group_arn = aws_lb_target_group.ingress.arn
  }
  tags = local.tags
}

resource "aws_ecs_service" "ingress" {
  name                               = "${var.prefix}-ingress"
  cluster                            = aws_ecs_cluster.this.id
  task_definition                    = aws_ecs_task_definition.ingress.arn
  launch_type                        = "FARGATE"
  platform_version                   = "LATEST"
  desired_count                      = var.ingress.min_count
  deployment_minimum_healthy_percent = 100
  deployment_maximum_percent         = 200
  health_check_grace_period_seconds  = 30
  enable_execute_command             = false
  propagate_tags                     = "SERVICE"

  network_configuration {
    subnets          = var.private_subnet_ids
    security_groups  = [aws_security_group.ingress.id]
    assign_public_ip = false
  }

  load_balancer {
    target_group_arn = aws_lb_target_group.ingress.arn
    container_name   = "ingress"
    container_port   = 9100
  }

  deployment_circuit_breaker {
    enable   = true
    rollback = true
  }

  lifecycle {
    ignore_changes = [desired_count] # owned by autoscaling
  }

  depends_on = [aws_lb_listener.ingress]
  tags       = local.tags
}

# Target tracking: CPU, and NLB active flows per task (idle libp2p connections cost memory and
# file descriptors, not CPU).
resource "aws_appautoscaling_target" "ingress" {
  service_namespace  = "ecs"
  resource_id        = "service/${aws_ecs_cluster.this.name}/${aws_ecs_service.ingress.name}"
  scalable_dimension = "ecs:service:DesiredCount"
  min_capacity       = var.ingress.min_count
  max_capacity       = var.ingress.max_count
}

resource "aws_appautoscaling_policy" "ingress_cpu" {
  name               = "${var.prefix}-ingress-cpu"
  policy_type        = "TargetTrackingScaling"
  service_namespace  = aws_appautoscaling_target.ingress.service_namespace
  resource_id        = aws_appautoscaling_target.ingress.resource_id
  scalable_dimension = aws_appautoscaling_target.ingress.scalable_dimension
  target_tracking_scaling_policy_configuration {
    target_value       = var.ingress.cpu_target_percent
    scale_in_cooldown  = 300
    scale_out_cooldown = 60
    predefined_metric_specification {
      predefined_metric_type = "ECSServiceAverageCPUUtilization"
    }
  }
}

resource "aws_appautoscaling_policy" "ingress_flows" {
  name               = "${var.prefix}-ingress-flows"
  policy_type        = "TargetTrackingScaling"
  service_namespace  = aws_appautoscaling_target.ingress.service_namespace
  resource_id        = aws_appautoscaling_target.ingress.resource_id
  scalable_dimension = aws_appautoscaling_target.ingress.scalable_dimension
  target_tracking_scaling_policy_configuration {
    target_value       = var.ingress.flows_per_task_target
    scale_in_cooldown  = 600
    scale_out_cooldown = 60
    customized_metric_specification {
      metrics {
        id          = "flows"
        return_data = false
        metric_stat {
          stat = "Average"
          metric {
            namespace   = "AWS/NetworkELB"
            metric_name = "ActiveFlowCount"
            dimensions {
              name  = "LoadBalancer"
              value = aws_lb.ingress.arn_suffix
            }
          }
        }
      }
      metrics {
        id          = "tasks"
        return_data = false
        metric_stat {
          stat = "Average"
          metric {
            namespace   = "ECS/ContainerInsights"
            metric_name = "RunningTaskCount"
            dimensions {
              name  = "ClusterName"
              value = aws_ecs_cluster.this.name
            }
            dimensions {
              name  = "ServiceName"
              value = aws_ecs_service.ingress.name
            }
          }
        }
      }
      metrics {
        id          = "per_task"
        expression  = "flows / tasks"
        label       = "active flows per task"
        return_data = true
      }
    }
  }
}

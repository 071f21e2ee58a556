# ------------------------------------------------------------------------------ optional Kubo on ECS + EFS
# ipfs.kubo_on_ecs = true: one Kubo task whose repository is on EFS (it survives task
# replacement), its RPC API (5001) on an internal NLB reachable from the VPC only (set
# lambda_subnet_ids so the functions reach it). Its swarm dials out through the NAT; it is not
# reachable from outside (no public 4001): for public retrieval pin the batch CIDs with a
# service, or run Kubo yourself and pass ipfs.api_url. Otherwise IPFS_API_URL =
# ipfs.api_url (your own Kubo, or a pinning service's Kubo-compatible RPC).

locals {
  kubo = var.ipfs.kubo_on_ecs ? toset(["kubo"]) : toset([])
}

resource "aws_efs_file_system" "kubo" {
  for_each         = local.kubo
  creation_token   = "${var.prefix}-kubo"
  encrypted        = true
  kms_key_id       = aws_kms_key.data.arn
  performance_mode = "generalPurpose"
  throughput_mode  = "elastic"
  lifecycle_policy {
    transition_to_ia = "AFTER_30_DAYS"
  }
  tags = merge(local.tags, { Name = "${var.prefix}-kubo" })
}

resource "aws_efs_backup_policy" "kubo" {
  for_each       = local.kubo
  file_system_id = aws_efs_file_system.kubo[each.key].id
  backup_policy {
    status = "ENABLED"
  }
}

resource "aws_efs_access_point" "kubo" {
  for_each       = local.kubo
  file_system_id = aws_efs_file_system.kubo[each.key].id
  # The ipfs/kubo image runs as uid/gid 1000 with IPFS_PATH=/data/ipfs.
  posix_user {
    uid = 1000
    gid = 1000
  }
  root_directory {
    path = "/kubo"
    creation_info {
      owner_uid   = 1000
      owner_gid   = 1000
      permissions = "0750"
    }
  }
  tags = local.tags
}

resource "aws_security_group" "kubo" {
  for_each    = local.kubo
  name        = "${var.prefix}-kubo"
  description = "Kubo: RPC API from the VPC only"
  vpc_id      = var.vpc_id
  tags        = local.tags
}

resource "aws_vpc_security_group_ingress_rule" "kubo_api" {
  for_each          = local.kubo
  security_group_id = aws_security_group.kubo[each.key].id
  description       = "Kubo RPC API (5001) from the VPC: functions and the internal NLB"
  ip_protocol       = "tcp"
  from_port         = 5001
  to_port           = 5001
  cidr_ipv4         = data.aws_vpc.this.cidr_block
}

resource "aws_vpc_security_group_egress_rule" "kubo_all" {
  for_each          = local.kubo
  security_group_id = aws_security_group.kubo[each.key].id
  description       = "IPFS swarm to any peer, ECR, logs, EFS"
  ip_protocol       = "-1"
  cidr_ipv4         = "0.0.0.0/0"
}

resource "aws_efs_mount_target" "kubo" {
  for_each        = var.ipfs.kubo_on_ecs ? toset(var.private_subnet_ids) : toset([])
  file_system_id  = aws_efs_file_system.kubo["kubo"].id
  subnet_id       = each.value
  security_groups = [aws_security_group.kubo_efs["kubo"].id]
}

resource "aws_security_group" "kubo_efs" {
  for_each = local.kubo
  #checkov:skip=CKV2_AWS_5:Attached to aws_efs_mount_target.kubo (for_each over the subnets, which checkov does not resolve).
  name        = "${var.prefix}-kubo-efs"
  description = "EFS mount targets of the Kubo repository: NFS from the Kubo task only"
  vpc_id      = var.vpc_id
  tags        = local.tags
}

resource "aws_vpc_security_group_ingress_rule" "kubo_efs" {
  for_each                     = local.kubo
  security_group_id            = aws_security_group.kubo_efs[each.key].id
  description                  = "NFS from Kubo"
  ip_protocol                  = "tcp"
  from_port                    = 2049
  to_port                      = 2049
  referenced_security_group_id = aws_security_group.kubo[each.key].id
}

resource "aws_cloudwatch_log_group" "kubo" {
  for_each = local.kubo
  #checkov:skip=CKV_AWS_338:Kubo's logs are operational only; 30 days.
  name              = "/ecs/${var.prefix}-kubo"
  retention_in_days = 30
  kms_key_id        = aws_kms_key.data.arn
  tags              = local.tags
}

resource "aws_iam_role" "kubo_task" {
  for_each           = local.kubo
  name               = "${var.prefix}-kubo"
  assume_role_policy = data.aws_iam_policy_document.assume_ecs_tasks.json
  tags               = local.tags
}

data "aws_iam_policy_document" "kubo_task" {
  for_each = local.kubo
  statement {
    sid       = "MountRepository"
    actions   = ["elasticfilesystem:ClientMount", "elasticfilesystem:ClientWrite"]
    resources = [aws_efs_file_system.kubo[each.key].arn]
    condition {
      test     = "StringEquals"
      variable = "elasticfilesystem:AccessPointArn"
      values   = [aws_efs_access_point.kubo[each.key].arn]
    }
  }
}

resource "aws_iam_role_policy" "kubo_task" {
  for_each = local.kubo
  name     = "${var.prefix}-kubo"
  role     = aws_iam_role.kubo_task[each.key].id
  policy   = data.aws_iam_policy_document.kubo_task[each.key].json
}

resource "aws_ecs_task_definition" "kubo" {
  for_each = local.kubo
  #checkov:skip=CKV_AWS_336:The upstream ipfs/kubo image's entrypoint initialises and migrates the repository and was not verified to run with a read-only root; only the repository (EFS) holds state.
  family                   = "${var.prefix}-kubo"
  requires_compatibilities = ["FARGATE"]
  network_mode             = "awsvpc"
  cpu                      = var.ipfs.kubo_cpu
  memory                   = var.ipfs.kubo_memory
  execution_role_arn       = aws_iam_role.ingress_execution.arn
  task_role_arn            = aws_iam_role.kubo_task[each.key].arn

  volume {
    name = "repo"
    efs_volume_configuration {
      file_system_id     = aws_efs_file_system.kubo[each.key].id
      transit_encryption = "ENABLED"
      authorization_config {
        access_point_id = aws_efs_access_point.kubo[each.key].id
        iam             = "ENABLED"
      }
    }
  }

  container_definitions = jsonencode([{
    name        = "kubo"
    image       = var.ipfs.kubo_image
    essential   = true
    stopTimeout = 60
    portMappings = [
      { containerPort = 4001, protocol = "tcp" },
      { containerPort = 4001, protocol = "udp" },
      { containerPort = 5001, protocol = "tcp" },
    ]
    environment = [{ name = "IPFS_PROFILE", value = "server" }]
    mountPoints = [{ sourceVolume = "repo", containerPath = "/data/ipfs", readOnly = false }]
    logConfiguration = {
      logDriver = "awslogs"
      options = {
        awslogs-group         = "/ecs/${var.prefix}-kubo"
        awslogs-region        = local.region
        awslogs-stream-prefix = "kubo"
      }
    }
  }])
  tags = local.tags
}

resource "aws_lb" "kubo" {
  count = var.ipfs.kubo_on_ecs ? 1 : 0
  #checkov:skip=CKV_AWS_91:TCP pass-through; no access logs for non-TLS NLB listeners.
  #checkov:skip=CKV2_AWS_20:Kubo's RPC is HTTP inside the VPC only (internal balancer, VPC-only security group).
  #checkov:skip=CKV2_AWS_28:WAF does not attach to a Network Load Balancer.
  name                             = "${var.prefix}-kubo"
  load_balancer_type               = "network"
  internal                         = true
  subnets                          = var.private_subnet_ids
  enable_cross_zone_load_balancing = true
  enable_deletion_protection       = true
  tags                             = local.tags
}

resource "aws_lb_target_group" "kubo_api" {
  for_each    = local.kubo
  name        = "${var.prefix}-kubo-api"
  port        = 5001
  protocol    = "TCP"
  target_type = "ip"
  vpc_id      = var.vpc_id
  health_check {
    protocol = "TCP"
    port     = "5001"
  }
  tags = local.tags
}

resource "aws_lb_listener" "kubo_api" {
  for_each = local.kubo
  #checkov:skip=CKV_AWS_2:Internal Kubo RPC inside the VPC; Kubo serves plain HTTP.
  #checkov:skip=CKV_AWS_103:Same.
  load_balancer_arn = aws_lb.kubo[0].arn
  port              = 5001
  protocol          = "TCP"
  default_action {
    type             = "forward"
    target_group_arn = aws_lb_target_group.kubo_api[each.key].arn
  }
  tags = local.tags
}

resource "aws_ecs_service" "kubo" {
  for_each         = local.kubo
  name             = "${var.prefix}-kubo"
  cluster          = aws_ecs_cluster.this.id
  task_definition  = aws_ecs_task_definition.kubo[each.key].arn
  launch_type      = "FARGATE"
  platform_version = "LATEST"
  desired_count    = 1
  # One writer of the repository: stop the old task before starting the new one.
  deployment_minimum_healthy_percent = 0
  deployment_maximum_percent         = 100
  propagate_tags                     = "SERVICE"

  network_configuration {
    subnets          = var.private_subnet_ids
    security_groups  = [aws_security_group.kubo[each.key].id]
    assign_public_ip = false
  }

  load_balancer {
    target_group_arn = aws_lb_target_group.kubo_api[each.key].arn
    container_name   = "kubo"
    container_port   = 5001
  }

  depends_on = [aws_lb_listener.kubo_api, aws_efs_mount_target.kubo]
  tags       = local.tags
}

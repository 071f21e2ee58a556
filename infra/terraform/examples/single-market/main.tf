# One data market in one region, on an existing VPC. Copy this folder, fill terraform.tfvars
# (see terraform.tfvars.example), then:  terraform init && terraform apply
# (infra/terraform/README.md walks through the keys to create before the first apply.)

terraform {
  required_version = ">= 1.9"
  required_providers {
    aws = {
      source  = "hashicorp/aws"
      version = ">= 6.0"
    }
  }
  # Keep state remote and locked in production, e.g.:
  # backend "s3" { bucket = "...", key = "sequencer/market-a.tfstate", region = "...", use_lockfile = true }
}

provider "aws" {
  region = var.region
  default_tags {
    tags = { project = "submission-sequencer" }
  }
}

module "sequencer" {
  source = "../../modules/sequencer"

  prefix                 = var.prefix
  data_market_address    = var.data_market_address
  protocol_state_address = var.protocol_state_address
  chain_id               = var.chain_id
  rpc_url                = var.rpc_url

  lambda_zip_dir = var.lambda_zip_dir
  ingress_image  = var.ingress_image

  vpc_id             = var.vpc_id
  public_subnet_ids  = var.public_subnet_ids
  private_subnet_ids = var.private_subnet_ids

  ipfs = { api_url = var.ipfs_api_url }

  signer_backend   = "kms"
  alarm_topic_arns = [aws_sns_topic.alarms.arn]

  epoch_manager = { enabled = var.epoch_manager_enabled }
  proof         = { enabled = var.proof_enabled, access = var.proof_access }
}

# CloudWatch cannot publish to a topic encrypted with the AWS-managed aws/sns key: a key of our
# own whose policy lets CloudWatch use it.
data "aws_caller_identity" "current" {}

data "aws_iam_policy_document" "alarms_key" {
  #checkov:skip=CKV_AWS_109:Key policy: "*" is this key.
  #checkov:skip=CKV_AWS_111:Key policy: "*" is this key.
  #checkov:skip=CKV_AWS_356:Key policy: "*" is this key.
  statement {
    sid       = "AccountAdmin"
    actions   = ["kms:*"]
    resources = ["*"]
    principals {
      type        = "AWS"
      identifiers = ["arn:aws:iam::${data.aws_caller_identity.current.account_id}:root"]
    }
  }
  statement {
    sid       = "CloudWatchPublishes"
    actions   = ["kms:GenerateDataKey*", "kms:Decrypt"]
    resources = ["*"]
    principals {
      type        = "Service"
      identifiers = ["cloudwatch.amazonaws.com"]
    }
  }
}

resource "aws_kms_key" "alarms" {
  description         = "${var.prefix}: alarm topic"
  enable_key_rotation = true
  policy              = data.aws_iam_policy_document.alarms_key.json
}

resource "aws_sns_topic" "alarms" {
  name              = "${var.prefix}-alarms"
  kms_master_key_id = aws_kms_key.alarms.arn
}

resource "aws_sns_topic_subscription" "email" {
  count     = var.alarm_email == "" ? 0 : 1
  topic_arn = aws_sns_topic.alarms.arn
  protocol  = "email"
  endpoint  = var.alarm_email
}

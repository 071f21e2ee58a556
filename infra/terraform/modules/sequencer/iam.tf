# ------------------------------------------------------------------------------ function roles
# One role per function, each granted exactly the calls its code makes (check/drift.py derives
# them from the handlers' calls of the records layer, handlers/src/*.rs over
# handlers/src/records/, and compares):
#  - every pipeline function builds all ports at cold start (lambdas/src/lib.rs aws_pipeline):
#    GetQueueUrl of every queue and DLQ, GetQueueAttributes of every queue (SqsQueue::for_kind);
#  - its event source mapping: ReceiveMessage, DeleteMessage, ChangeMessageVisibility,
#    GetQueueAttributes on the queue it consumes;
#  - DynamoDB: the item calls its handler makes on each table through the records layer (get -> GetItem, put /
#    put_if_absent / transition -> PutItem, add_bounded -> UpdateItem, query -> Query,
#    delete -> DeleteItem; a transaction's items: Check -> ConditionCheckItem, Put -> PutItem,
#    AddMembers -> UpdateItem; batch_get -> BatchGetItem, batch_put -> BatchWriteItem);
#  - SendMessage to the queue it feeds; kms:Sign + GetPublicKey on its own signing key;
#  - proof: GetQueueAttributes on every DLQ, whose depth its status summary shows
#    (handlers/src/query/summary.rs: Queue::depth over the DLQs lambdas/src/bin/proof.rs passes).

data "aws_iam_policy_document" "assume_lambda" {
  statement {
    actions = ["sts:AssumeRole"]
    principals {
      type        = "Service"
      identifiers = ["lambda.amazonaws.com"]
    }
    condition {
      test     = "StringEquals"
      variable = "aws:SourceAccount"
      values   = [local.account_id]
    }
  }
}

resource "aws_iam_role" "fn" {
  for_each           = local.enabled_functions
  name               = "${var.prefix}-${each.key}"
  assume_role_policy = data.aws_iam_policy_document.assume_lambda.json
  tags               = local.tags
}

locals {
  table_arn = { for t, _ in local.tables : t => "arn:${local.partition}:dynamodb:${local.region}:${local.account_id}:table/${var.prefix}-${t}" }

  # function -> table -> DynamoDB actions (from the handlers; see the header).
  dynamodb_actions = {
    verify = {
      receipts    = ["dynamodb:BatchGetItem", "dynamodb:PutItem"]
      epochs      = ["dynamodb:BatchGetItem", "dynamodb:ConditionCheckItem", "dynamodb:GetItem", "dynamodb:PutItem", "dynamodb:Query"]
      submissions = ["dynamodb:BatchGetItem", "dynamodb:PutItem"]
      counters    = ["dynamodb:BatchGetItem", "dynamodb:UpdateItem"]
      blocks      = ["dynamodb:BatchGetItem", "dynamodb:BatchWriteItem"]
    }
    tick = {
      epochs   = ["dynamodb:GetItem", "dynamodb:PutItem", "dynamodb:Query"]
      blocks   = ["dynamodb:PutItem"]
      counters = ["dynamodb:BatchGetItem"]
    }
    finalize = {
      epochs      = ["dynamodb:GetItem", "dynamodb:PutItem", "dynamodb:Query"]
      batches     = ["dynamodb:GetItem", "dynamodb:PutItem", "dynamodb:Query"]
      submissions = ["dynamodb:Query"]
      receipts    = ["dynamodb:Query"]
    }
    anchor = {
      epochs  = ["dynamodb:GetItem", "dynamodb:PutItem", "dynamodb:Query"]
      batches = ["dynamodb:PutItem", "dynamodb:Query"]
    }
    proof = {
      receipts = ["dynamodb:GetItem", "dynamodb:Query"]
      epochs   = ["dynamodb:GetItem", "dynamodb:Query"]
      batches  = ["dynamodb:GetItem", "dynamodb:Query"]
    }
    "epoch-manager" = {}
  }

  # function -> queue it sends to (the submissions DLQ for verify: poison messages with a reason).
  sends_to = {
    verify   = [aws_sqs_queue.dlq["submissions"].arn]
    tick     = [aws_sqs_queue.main["finalize"].arn]
    finalize = [aws_sqs_queue.main["anchor"].arn]
  }

  # function -> queues whose depth it reads (the status summary's dead-letter queues).
  reads_depth_of = {
    proof = values(aws_sqs_queue.dlq)[*].arn
  }

  pipeline_functions = toset([for f in local.enabled_functions : f if f != "epoch-manager"])
}

data "aws_iam_policy_document" "fn" {
  for_each = local.enabled_functions

  statement {
    sid       = "OwnLogs"
    actions   = ["logs:CreateLogStream", "logs:PutLogEvents"]
    resources = ["${aws_cloudwatch_log_group.fn[each.key].arn}:*"]
  }

  dynamic "statement" {
    for_each = contains(local.pipeline_functions, each.key) ? ["resolve"] : []
    content {
      sid       = "ResolveQueues"
      actions   = ["sqs:GetQueueUrl", "sqs:GetQueueAttributes"]
      resources = concat(values(aws_sqs_queue.main)[*].arn, values(aws_sqs_queue.dlq)[*].arn)
    }
  }

  dynamic "statement" {
    for_each = contains(keys(local.consumer_queue), each.key) ? [local.consumer_queue[each.key]] : []
    content {
      sid       = "ConsumeQueue"
      actions   = ["sqs:ReceiveMessage", "sqs:DeleteMessage", "sqs:ChangeMessageVisibility", "sqs:GetQueueAttributes"]
      resources = [aws_sqs_queue.main[statement.value].arn]
    }
  }

  dynamic "statement" {
    for_each = contains(keys(local.sends_to), each.key) ? ["send"] : []
    content {
      sid       = "SendQueue"
      actions   = ["sqs:SendMessage"]
      resources = local.sends_to[each.key]
    }
  }

  dynamic "statement" {
    for_each = contains(keys(local.reads_depth_of), each.key) ? ["depth"] : []
    content {
      sid       = "QueueDepth"
      actions   = ["sqs:GetQueueAttributes"]
      resources = local.reads_depth_of[each.key]
    }
  }

  dynamic "statement" {
    for_each = local.dynamodb_actions[each.key]
    content {
      sid       = "Table${replace(title(statement.key), "-", "")}"
      actions   = statement.value
      resources = [local.table_arn[statement.key]]
    }
  }

  statement {
    # The data key encrypts the tables and this function's environment (Lambda decrypts it
    # with the execution role at cold start).
    sid       = "DataKey"
    actions   = ["kms:Decrypt", "kms:GenerateDataKey"]
    resources = [aws_kms_key.data.arn]
    condition {
      test     = "StringEquals"
      variable = "kms:ViaService"
      values   = ["dynamodb.${local.region}.amazonaws.com", "lambda.${local.region}.amazonaws.com"]
    }
  }

  dynamic "statement" {
    for_each = var.signer_backend == "kms" && contains(local.signing_functions, each.key) ? ["sign"] : []
    content {
      sid       = "Sign"
      actions   = ["kms:Sign", "kms:GetPublicKey"]
      resources = [aws_kms_key.signer[each.key].arn]
    }
  }

  dynamic "statement" {
    for_each = length(var.lambda_subnet_ids) > 0 ? ["vpc"] : []
    content {
      # Lambda's ENI management: these EC2 calls take no resource-level permissions.
      sid = "VpcEni"
      actions = [
        "ec2:CreateNetworkInterface", "ec2:DescribeNetworkInterfaces", "ec2:DeleteNetworkInterface",
        "ec2:AssignPrivateIpAddresses", "ec2:UnassignPrivateIpAddresses",
      ]
      resources = ["*"]
    }
  }
}

resource "aws_iam_role_policy" "fn" {
  for_each = local.enabled_functions
  #checkov:skip=CKV_AWS_290:The only write without a resource constraint is Lambda's own ENI management in a VPC (EC2 offers no resource-level permissions for it).
  #checkov:skip=CKV_AWS_355:Same: ec2:*NetworkInterface* with "*" only when lambda_subnet_ids is set.
  name   = "${var.prefix}-${each.key}"
  role   = aws_iam_role.fn[each.key].id
  policy = data.aws_iam_policy_document.fn[each.key].json
}

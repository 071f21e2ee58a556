# ------------------------------------------------------------------------------ SQS
# Same names and shape as localstack/resources.py: each queue with its own DLQ, redrive after
# max_receive_count deliveries; anchor (and its DLQ) FIFO without content-based dedup (finalize
# sets the deduplication id per epoch).

resource "aws_sqs_queue" "dlq" {
  for_each = local.queues

  name                        = local.dlq_name[each.key]
  fifo_queue                  = each.value.fifo ? true : null
  content_based_deduplication = each.value.fifo ? false : null
  message_retention_seconds   = 1209600 # 14 days, the SQS maximum: time to inspect and redrive
  sqs_managed_sse_enabled     = true
  tags                        = local.tags
}

resource "aws_sqs_queue" "main" {
  for_each = local.queues

  name                        = local.queue_name[each.key]
  fifo_queue                  = each.value.fifo ? true : null
  content_based_deduplication = each.value.fifo ? false : null
  visibility_timeout_seconds  = local.visibility[each.key]
  message_retention_seconds   = 345600 # 4 days (default)
  receive_wait_time_seconds   = 0      # the event source mapping long-polls by itself
  sqs_managed_sse_enabled     = true
  redrive_policy = jsonencode({
    deadLetterTargetArn = aws_sqs_queue.dlq[each.key].arn
    maxReceiveCount     = local.fn[each.value.consumer].max_receive_count
  })
  tags = local.tags
}

resource "aws_sqs_queue_redrive_allow_policy" "dlq" {
  for_each  = local.queues
  queue_url = aws_sqs_queue.dlq[each.key].id
  redrive_allow_policy = jsonencode({
    redrivePermission = "byQueue"
    sourceQueueArns   = [aws_sqs_queue.main[each.key].arn]
  })
}

# ------------------------------------------------------------------------------ DynamoDB
# Exactly the state port's tables (ports/src/state.rs `Table::ALL`), each with string
# pk + sk as DynamoStore writes them; on demand; TTL attribute `ttl` where records expire.

resource "aws_dynamodb_table" "t" {
  for_each = local.tables

  name                        = "${var.prefix}-${each.key}"
  billing_mode                = "PAY_PER_REQUEST"
  hash_key                    = "pk"
  range_key                   = "sk"
  deletion_protection_enabled = true

  attribute {
    name = "pk"
    type = "S"
  }
  attribute {
    name = "sk"
    type = "S"
  }

  dynamic "ttl" {
    for_each = each.value ? ["ttl"] : []
    content {
      attribute_name = ttl.value
      enabled        = true
    }
  }

  point_in_time_recovery {
    enabled = true
  }

  server_side_encryption {
    enabled     = true
    kms_key_arn = aws_kms_key.data.arn
  }

  tags = local.tags
}

# ------------------------------------------------------------------------------ S3
# localstack/resources.py creates <prefix>-batches; no function writes to it yet (batch documents
# go to IPFS), so no function is granted access. Kept so both setups create the same resources
# and operators have a place to archive batch documents.

resource "aws_s3_bucket" "b" {
  for_each = toset(local.buckets)
  #checkov:skip=CKV_AWS_144:Cross-region replication is an operator choice; batch documents are also on IPFS.
  #checkov:skip=CKV_AWS_18:Access logging needs a log bucket the operator owns; pass one via a wrapper module.
  #checkov:skip=CKV2_AWS_62:No consumer of bucket events exists.
  bucket = "${var.prefix}-${each.key}${var.bucket_suffix}"
  tags   = local.tags
}

resource "aws_s3_bucket_versioning" "b" {
  for_each = aws_s3_bucket.b
  bucket   = each.value.id
  versioning_configuration {
    status = "Enabled"
  }
}

resource "aws_s3_bucket_server_side_encryption_configuration" "b" {
  for_each = aws_s3_bucket.b
  bucket   = each.value.id
  rule {
    apply_server_side_encryption_by_default {
      sse_algorithm     = "aws:kms"
      kms_master_key_id = aws_kms_key.data.arn
    }
    bucket_key_enabled = true
  }
}

resource "aws_s3_bucket_public_access_block" "b" {
  for_each                = aws_s3_bucket.b
  bucket                  = each.value.id
  block_public_acls       = true
  block_public_policy     = true
  ignore_public_acls      = true
  restrict_public_buckets = true
}

resource "aws_s3_bucket_lifecycle_configuration" "b" {
  for_each = aws_s3_bucket.b
  bucket   = each.value.id
  rule {
    id     = "expire-noncurrent"
    status = "Enabled"
    filter {}
    noncurrent_version_expiration {
      noncurrent_days = 30
    }
    abort_incomplete_multipart_upload {
      days_after_initiation = 7
    }
  }
}

# ------------------------------------------------------------------------------ data key
# Encrypts the tables, the bucket, the log groups and the functions' environment (which holds
# RPC_URL and, with signer_backend = secrets_manager, the private key).

resource "aws_kms_key" "data" {
  description             = "${var.prefix}: sequencer data (DynamoDB, S3, logs, Lambda environment)"
  enable_key_rotation     = true
  deletion_window_in_days = var.kms_deletion_window_days
  policy                  = data.aws_iam_policy_document.data_key.json
  tags                    = local.tags
}

resource "aws_kms_alias" "data" {
  name          = "alias/${var.prefix}-data"
  target_key_id = aws_kms_key.data.key_id
}

data "aws_iam_policy_document" "data_key" {
  #checkov:skip=CKV_AWS_109:A key policy's Resource "*" means this key; the account root statement is the AWS default that lets IAM policies grant use.
  #checkov:skip=CKV_AWS_111:Same: key policies can only name "*" as resource.
  #checkov:skip=CKV_AWS_356:Same: key policies can only name "*" as resource.
  statement {
    sid       = "AccountAdmin"
    actions   = ["kms:*"]
    resources = ["*"]
    principals {
      type        = "AWS"
      identifiers = ["arn:${local.partition}:iam::${local.account_id}:root"]
    }
  }
  statement {
    sid       = "CloudWatchLogs"
    actions   = ["kms:Encrypt*", "kms:Decrypt*", "kms:ReEncrypt*", "kms:GenerateDataKey*", "kms:Describe*"]
    resources = ["*"]
    principals {
      type        = "Service"
      identifiers = ["logs.${local.region}.amazonaws.com"]
    }
    condition {
      test     = "ArnLike"
      variable = "kms:EncryptionContext:aws:logs:arn"
      values   = ["arn:${local.partition}:logs:${local.region}:${local.account_id}:log-group:*${var.prefix}*"]
    }
  }
}

# ------------------------------------------------------------------------------ signing keys
# One key per signer (anchor: submitSubmissionBatch/endBatchSubmissions; epoch-manager:
# releaseEpoch). The anchor FIFO queue has one message group per key (ANCHOR_GROUP_ID).
# kms: secp256k1 keys that never leave KMS (chain/src with the aws-kms feature: KMS_KEY_ID; the
# Ethereum address is derived from GetPublicKey - `seqctl` or `cast wallet address --aws` prints it,
# fund and register it on chain). Asymmetric keys cannot be rotated by KMS.

resource "aws_kms_key" "signer" {
  for_each = var.signer_backend == "kms" ? local.signing_functions : toset([])
  #checkov:skip=CKV_AWS_7:Asymmetric (ECC_SECG_P256K1) keys do not support automatic rotation; the on-chain address is bound to the key.
  description              = "${var.prefix}: ${each.key} signing key (secp256k1)"
  customer_master_key_spec = "ECC_SECG_P256K1"
  key_usage                = "SIGN_VERIFY"
  deletion_window_in_days  = var.kms_deletion_window_days
  policy                   = data.aws_iam_policy_document.signer_key[each.key].json
  tags                     = merge(local.tags, { "sequencer:signer" = each.key })
}

resource "aws_kms_alias" "signer" {
  for_each      = aws_kms_key.signer
  name          = "alias/${var.prefix}-${each.key}-signer"
  target_key_id = each.value.key_id
}

data "aws_iam_policy_document" "signer_key" {
  for_each = local.signing_functions
  #checkov:skip=CKV_AWS_109:Key policy: "*" is this key; administration stays with the account, signing only with the function's role.
  #checkov:skip=CKV_AWS_111:Key policy: "*" is this key.
  #checkov:skip=CKV_AWS_356:Key policy: "*" is this key.
  statement {
    sid = "AccountAdminNoSign"
    # Administration, but not Sign: only the function's role signs.
    actions = [
      "kms:Create*", "kms:Describe*", "kms:Enable*", "kms:List*", "kms:Put*", "kms:Update*",
      "kms:Revoke*", "kms:Disable*", "kms:Get*", "kms:Delete*", "kms:TagResource",
      "kms:UntagResource", "kms:ScheduleKeyDeletion", "kms:CancelKeyDeletion",
    ]
    resources = ["*"]
    principals {
      type        = "AWS"
      identifiers = ["arn:${local.partition}:iam::${local.account_id}:root"]
    }
  }
  statement {
    sid       = "FunctionSigns"
    actions   = ["kms:Sign", "kms:GetPublicKey"]
    resources = ["*"]
    principals {
      type        = "AWS"
      identifiers = [aws_iam_role.fn[each.key].arn]
    }
  }
}

# secrets_manager: a hex private key per signer, which you put in yourself:
#   aws secretsmanager put-secret-value --secret-id <prefix>/anchor-signer --secret-string 0x...
# then apply again with signer_secret_ready = true.
resource "aws_secretsmanager_secret" "signer" {
  for_each = var.signer_backend == "secrets_manager" ? local.signing_functions : toset([])
  #checkov:skip=CKV2_AWS_57:An Ethereum signing key cannot be rotated by Secrets Manager: its address is registered on chain.
  name        = "${var.prefix}/${each.key}-signer"
  description = "${var.prefix}: ${each.key} signing key, hex secp256k1 private key"
  kms_key_id  = aws_kms_key.data.arn
  tags        = local.tags
}

data "aws_secretsmanager_secret_version" "signer" {
  for_each  = var.signer_backend == "secrets_manager" && var.signer_secret_ready ? local.signing_functions : toset([])
  secret_id = aws_secretsmanager_secret.signer[each.key].id
}

# ------------------------------------------------------------------------------ libp2p host key
# INGRESS_KEY: hex of the protobuf-encoded libp2p keypair, shared by all replicas so the service
# has one peer id. Make one with `sequencer-ingress --key-file k --generate-key --print-peer-id` (writes k) and
# `xxd -p -c0 k`; put it with `aws secretsmanager put-secret-value`.
resource "aws_secretsmanager_secret" "ingress_key" {
  count = var.ingress_host_key_secret_arn == "" ? 1 : 0
  #checkov:skip=CKV2_AWS_57:The host key is the peer id collectors pin; rotating it is a coordinated change, not a schedule.
  name        = "${var.prefix}/ingress-host-key"
  description = "${var.prefix}: libp2p host key of the ingress (INGRESS_KEY)"
  kms_key_id  = aws_kms_key.data.arn
  tags        = local.tags
}

locals {
  ingress_key_secret_arn = var.ingress_host_key_secret_arn != "" ? var.ingress_host_key_secret_arn : aws_secretsmanager_secret.ingress_key[0].arn
}

# The whole stack on LocalStack (Docker + auth token: localstack/docker/compose.yaml started with
# SEQ_INIT_RESOURCES=0), from the same module operators apply to AWS:
#
#   pip install terraform-local==0.27.0        # tflocal: terraform with LocalStack endpoints
#   infra/build.sh                              # the Lambda zips (target/lambda)
#   cd localstack/terraform && tflocal init && tflocal apply
#
# Same names as localstack/resources.py (prefix "seq": seq-submissions, seq-anchor.fifo, ...);
# infra/terraform/check/drift.py keeps the module and resources.py in step.

terraform {
  required_version = ">= 1.9"
  required_providers {
    aws = {
      source  = "hashicorp/aws"
      version = ">= 6.0"
    }
  }
}

provider "aws" {
  region = var.region
}

variable "region" {
  description = "Region LocalStack serves."
  type        = string
  default     = "us-east-1"
}

variable "prefix" {
  description = "SEQ_PREFIX (seq, like the Docker-less setup)."
  type        = string
  default     = "seq"
}

variable "rpc_url" {
  description = "Protocol chain RPC reachable from the Lambda containers, e.g. an anvil on the host."
  type        = string
  default     = "http://host.docker.internal:8545"
}

variable "protocol_state_address" {
  description = "PROTOCOL_STATE_ADDRESS (`seqctl chain deploy` prints it)."
  type        = string
  default     = "0x5FbDB2315678afecb367f032d93F642f64180aa3"
}

variable "data_market_address" {
  description = "DATA_MARKET_ADDRESS (`seqctl chain deploy` prints it)."
  type        = string
  default     = "0x0000000000000000000000000000000000000001"
}

# LocalStack has no default VPC worth relying on: make a small one.
resource "aws_vpc" "local" {
  #checkov:skip=CKV2_AWS_11:Emulator-only VPC; no flow logs in LocalStack.
  #checkov:skip=CKV2_AWS_12:Emulator-only VPC.
  cidr_block = "10.42.0.0/16"
}

resource "aws_subnet" "local" {
  for_each          = { a = "10.42.1.0/24", b = "10.42.2.0/24" }
  vpc_id            = aws_vpc.local.id
  cidr_block        = each.value
  availability_zone = "${var.region}${each.key}"
}

module "sequencer" {
  source = "../../infra/terraform/modules/sequencer"

  prefix                 = var.prefix
  data_market_address    = var.data_market_address
  protocol_state_address = var.protocol_state_address
  chain_id               = 31337
  rpc_url                = var.rpc_url

  lambda_zip_dir = "${path.root}/../../target/lambda"
  ingress_image  = "sequencer-ingress:local" # docker build -f ingress/Dockerfile -t sequencer-ingress:local .

  vpc_id             = aws_vpc.local.id
  public_subnet_ids  = values(aws_subnet.local)[*].id
  private_subnet_ids = values(aws_subnet.local)[*].id

  ipfs                     = { api_url = "http://host.docker.internal:5002" } # scripts/ipfs.sh on the host
  kms_deletion_window_days = 7
  ingress                  = { min_count = 1, max_count = 1 }
}

output "queue_urls" {
  description = "Queue URLs."
  value       = module.sequencer.queue_urls
}

output "function_names" {
  description = "Function names."
  value       = module.sequencer.function_names
}

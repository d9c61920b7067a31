# A stand-in for a VPC module: built-in terraform_data only, so it runs offline.
variable "name" {
  type        = string
  description = "Environment name, used as a prefix."
}

variable "cidr" {
  type        = string
  description = "Address range of the network."
}

resource "terraform_data" "vpc" {
  input = {
    name = "${var.name}-vpc"
    cidr = var.cidr
  }
}

resource "terraform_data" "subnet" {
  count = 2
  input = {
    vpc  = terraform_data.vpc.output.name
    cidr = cidrsubnet(var.cidr, 8, count.index)
  }
}

output "vpc_id" {
  value = "vpc-${substr(sha1(terraform_data.vpc.id), 0, 8)}"
}

output "subnets" {
  value = [for s in terraform_data.subnet : s.output.cidr]
}

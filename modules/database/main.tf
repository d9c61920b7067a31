# A stand-in for a managed database: built-in terraform_data only, so it runs offline.
variable "name" {
  type = string
}

variable "vpc_id" {
  type = string
}

variable "size" {
  type    = string
  default = "small"
}

resource "terraform_data" "db" {
  input = {
    name   = "${var.name}-db"
    vpc_id = var.vpc_id
    size   = var.size
  }
  triggers_replace = [var.vpc_id]
}

output "endpoint" {
  value = "${terraform_data.db.output.name}.${var.vpc_id}.internal:5432"
}

output "password" {
  value     = sha256("${terraform_data.db.id}-${var.name}")
  sensitive = true
}

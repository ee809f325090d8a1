"""Commands an operator runs against a deployed Parlor stack."""

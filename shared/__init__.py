"""The fixed experimental conditions, identical for every level: data, contract, simulator."""

"""The `voucher` command line and what its commands run outside the service: the demo (an HTTP client of the
service), backup and restore of a data folder. The service's own modules never import this package."""

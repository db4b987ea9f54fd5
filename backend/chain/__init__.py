"""Everything that talks to the chain: compiler, devnet, deployment, transactions.

Only this package imports web3."""

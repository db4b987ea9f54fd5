"""Everything that talks to the chain: compiler, devnet node, deployment, transactions. Only this package imports web3."""

// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

/// @title The Compute Voucher Ledger's vocabulary: types, events and errors
/// @notice Token id = programme id; one unit = ¥0.01 (one fen). Vouchers never move between holders:
/// they are minted to an enterprise (issuance) and burnt (redemption, reclaim, revocation, migration).
/// Every state change emits one of the events below, so every balance and total can be rebuilt from logs.
interface IComputeVoucher {
    /// @notice What a registered account is.
    enum Kind {
        None,
        Enterprise,
        Provider
    }

    /// @notice The parameters a programme is created with.
    /// @param budget Most the programme may have outstanding or spent, in fen.
    /// @param capPerEnterprise Most one enterprise may ever be issued, in fen.
    /// @param ratioBps Subsidy share of an invoice in basis points (5000 = 50%).
    /// @param validFrom First second at which vouchers may be redeemed.
    /// @param validUntil First second at which vouchers are expired (no issuance, no redemption).
    /// @param categories Bit mask of allowed compute categories (bit n set = category n allowed).
    /// @param providers Providers allowed to redeem in this programme.
    struct ProgrammeParams {
        uint128 budget;
        uint128 capPerEnterprise;
        uint16 ratioBps;
        uint64 validFrom;
        uint64 validUntil;
        uint256 categories;
        address[] providers;
    }

    /// @notice A programme's parameters and running totals (all amounts in fen).
    struct Programme {
        uint128 budget;
        uint128 capPerEnterprise;
        uint128 issued;
        uint128 redeemed;
        uint128 reclaimed;
        uint128 revoked;
        uint16 ratioBps;
        uint64 validFrom;
        uint64 validUntil;
        uint256 categories;
    }

    /// @notice A provider's claim that the enterprise consents to, field for field (the provider is msg.sender).
    struct Redemption {
        address enterprise;
        uint256 programmeId;
        uint256 amount;
        uint256 invoiceAmount;
        bytes32 invoiceHash;
        uint8 category;
        uint256 nonce;
        uint256 deadline;
    }

    // ------------------------------------------------------------------ events

    /// @notice `account` was registered as `kind`; `ref` is the off-chain participant reference.
    event ParticipantRegistered(address indexed account, Kind kind, bytes32 ref);

    /// @notice `account` was frozen by a supervisor, or by the admin's `migrateHolder` retiring it (reason 900);
    /// `reasonCode` says why.
    event AccountFrozen(address indexed account, uint32 reasonCode, address indexed by);

    /// @notice `account` was unfrozen.
    event AccountUnfrozen(address indexed account, address indexed by);

    /// @notice Programme `programmeId` was created with these parameters.
    event ProgrammeCreated(
        uint256 indexed programmeId,
        uint128 budget,
        uint128 capPerEnterprise,
        uint16 ratioBps,
        uint64 validFrom,
        uint64 validUntil,
        uint256 categories
    );

    /// @notice `provider` was allowed (or no longer allowed) to redeem in `programmeId`.
    event ProgrammeProviderSet(uint256 indexed programmeId, address indexed provider, bool allowed);

    /// @notice `enterprise` and `provider` were declared related (or no longer related).
    event RelatedPartySet(address indexed enterprise, address indexed provider, bool related);

    /// @notice `amount` fen of programme `programmeId` were issued to `enterprise` for application `applicationRef`.
    event VoucherIssued(uint256 indexed programmeId, address indexed enterprise, uint256 amount, bytes32 applicationRef);

    /// @notice `provider` redeemed (burnt) `amount` fen of `enterprise`'s vouchers against an invoice.
    event VoucherRedeemed(
        uint256 indexed programmeId,
        address indexed enterprise,
        address indexed provider,
        uint256 amount,
        uint256 invoiceAmount,
        bytes32 invoiceHash,
        uint8 category,
        uint256 nonce
    );

    /// @notice After expiry, `amount` fen held by `holder` were burnt and went back to the budget.
    event VoucherReclaimed(uint256 indexed programmeId, address indexed holder, uint256 amount, uint256 budgetAvailable);

    /// @notice A supervisor revoked (burnt) `amount` fen held by `holder`; they went back to the budget.
    event VoucherRevoked(
        uint256 indexed programmeId, address indexed holder, uint256 amount, uint32 reasonCode, address indexed by
    );

    /// @notice `amount` fen (possibly 0) and the cap used so far moved from a retired managed account to its
    /// replacement, by the admin.
    event VoucherMigrated(uint256 indexed programmeId, address indexed from, address indexed to, uint256 amount);

    /// @notice `digest` (a settlement batch or audit report hash) was recorded by `by`.
    event HashAnchored(bytes32 indexed digest, bytes32 indexed kind, address indexed by);

    // ------------------------------------------------------------------ errors

    /// @notice Vouchers cannot move from `from` to `to`: only issuance and burning exist.
    error VoucherNonTransferable(address from, address to);

    /// @notice Operators cannot be approved: there is nothing they could transfer.
    error VoucherApprovalDisabled(address owner, address operator);

    /// @notice `account` is already registered as `kind`.
    error ParticipantAlreadyRegistered(address account, Kind kind);

    /// @notice `account` is not registered as `expected` (it is `actual`).
    error ParticipantKindMismatch(address account, Kind expected, Kind actual);

    /// @notice `account` is frozen.
    error AccountIsFrozen(address account);

    /// @notice `account` is not frozen, so there is nothing to unfreeze (or it is, and freezing again is refused).
    error AccountFrozenStateUnchanged(address account, bool frozen);

    /// @notice The zero address cannot take part.
    error ZeroAddress();

    /// @notice An amount of zero does nothing and is refused.
    error ZeroAmount();

    /// @notice No programme has id `programmeId`.
    error ProgrammeNotFound(uint256 programmeId);

    /// @notice `ratioBps` must be between 1 and 10000.
    error ProgrammeInvalidRatio(uint16 ratioBps);

    /// @notice The window must end after it starts and after now.
    error ProgrammeInvalidWindow(uint64 validFrom, uint64 validUntil);

    /// @notice The budget must be positive and the cap must be positive and at most the budget.
    error ProgrammeInvalidLimits(uint128 budget, uint128 capPerEnterprise);

    /// @notice A programme needs at least one allowed compute category.
    error ProgrammeNoCategories();

    /// @notice Issuance of `amount` would take the programme's outstanding total past its budget.
    error ProgrammeBudgetExceeded(uint256 programmeId, uint256 available, uint256 amount);

    /// @notice Issuance of `amount` would take `enterprise`'s issued total past the programme's cap.
    error EnterpriseCapExceeded(uint256 programmeId, address enterprise, uint256 available, uint256 amount);

    /// @notice The programme's window has closed at `validUntil`.
    error ProgrammeExpired(uint256 programmeId, uint64 validUntil);

    /// @notice The programme's window opens at `validFrom`.
    error ProgrammeNotStarted(uint256 programmeId, uint64 validFrom);

    /// @notice The programme's window is still open until `validUntil`, so nothing can be reclaimed yet.
    error ProgrammeStillActive(uint256 programmeId, uint64 validUntil);

    /// @notice Batch arguments have different lengths.
    error BatchLengthMismatch(uint256 holders, uint256 amounts, uint256 refs);

    /// @notice `provider` is not allowed to redeem in `programmeId`.
    error ProviderNotInProgramme(uint256 programmeId, address provider);

    /// @notice Compute category `category` is outside the programme's scope.
    error CategoryNotAllowed(uint256 programmeId, uint8 category);

    /// @notice `enterprise` and `provider` are related parties, so the provider cannot redeem its vouchers.
    error RelatedPartyRedemption(address enterprise, address provider);

    /// @notice `amount` exceeds the subsidy share of the invoice (`maxSubsidy`).
    error RedemptionExceedsSubsidy(uint256 amount, uint256 maxSubsidy);

    /// @notice The invoice with hash `invoiceHash` was already subsidised.
    error InvoiceAlreadyRedeemed(bytes32 invoiceHash);

    /// @notice The enterprise's consent expired at `deadline` (now is `timestamp`).
    error ConsentExpired(uint256 deadline, uint256 timestamp);

    /// @notice The consent signature is malformed or malleable (high s).
    error ConsentSignatureInvalid();

    /// @notice The consent was signed by `signer`, not by `enterprise`.
    error ConsentSignerMismatch(address enterprise, address signer);

    /// @notice `enterprise` has already used consent nonce `nonce`.
    error ConsentNonceUsed(address enterprise, uint256 nonce);

    /// @notice A managed key can only be migrated to a different, active enterprise key with no vouchers or
    /// issuance of its own in the programmes moved.
    error MigrationTargetInvalid(address from, address to);

    /// @notice `digest` has already been anchored.
    error HashAlreadyAnchored(bytes32 digest);

    // ------------------------------------------------------------------ functions

    /// @notice Registers `account` as an enterprise or provider. Admin only.
    function registerParticipant(address account, Kind kind, bytes32 ref) external;

    /// @notice Freezes `account` (it can neither receive nor redeem). Supervisor only.
    function freeze(address account, uint32 reasonCode) external;

    /// @notice Unfreezes `account`. Supervisor only.
    function unfreeze(address account) external;

    /// @notice Declares (or clears) a related-party link between an enterprise and a provider. Admin only.
    function setRelatedParty(address enterprise, address provider, bool related) external;

    /// @notice Creates a programme and returns its id (= token id). Admin only.
    function createProgramme(ProgrammeParams calldata params) external returns (uint256 programmeId);

    /// @notice Allows or disallows `provider` in `programmeId`. Admin only.
    function setProgrammeProvider(uint256 programmeId, address provider, bool allowed) external;

    /// @notice Issues `amount` fen of `programmeId` to `enterprise`. Issuer only.
    function issue(uint256 programmeId, address enterprise, uint256 amount, bytes32 applicationRef) external;

    /// @notice Issues to many enterprises at once. Issuer only.
    function issueBatch(
        uint256 programmeId,
        address[] calldata enterprises,
        uint256[] calldata amounts,
        bytes32[] calldata applicationRefs
    ) external;

    /// @notice Burns `r.amount` of `r.enterprise`'s vouchers for the calling provider, with the enterprise's consent.
    function redeem(Redemption calldata r, bytes calldata signature) external;

    /// @notice After expiry, burns everything `holders` still hold of `programmeId`. Issuer only.
    function reclaim(uint256 programmeId, address[] calldata holders) external;

    /// @notice Burns `amount` of `holder`'s vouchers with a reason code. Supervisor only.
    function revoke(uint256 programmeId, address holder, uint256 amount, uint32 reasonCode) external;

    /// @notice Moves `from`'s whole balance and issued total of each programme to `to`, a fresh managed key
    /// replacing it (e.g. after a suspected compromise), and freezes `from` (AccountFrozen, reason 900) unless it
    /// already is, so the retired key can neither redeem nor be issued a second cap. Admin only.
    function migrateHolder(address from, address to, uint256[] calldata programmeIds) external;

    /// @notice Records `digest` of kind `kind` on chain. Finance or supervisor.
    function anchor(bytes32 digest, bytes32 kind) external;

    /// @notice Stops every issuance and burn. Admin or supervisor.
    function pause() external;

    /// @notice Resumes. Admin only.
    function unpause() external;

    /// @notice The programme's parameters and totals.
    function programme(uint256 programmeId) external view returns (Programme memory);

    /// @notice How many programmes exist (ids run from 1 to this).
    function programmeCount() external view returns (uint256);

    /// @notice The kind and frozen state of `account`.
    function participant(address account) external view returns (Kind kind, bool frozen);

    /// @notice Whether `provider` may redeem in `programmeId`.
    function isProgrammeProvider(uint256 programmeId, address provider) external view returns (bool);

    /// @notice Whether `enterprise` and `provider` are declared related.
    function isRelatedParty(address enterprise, address provider) external view returns (bool);

    /// @notice Total ever issued to `enterprise` in `programmeId` (what the cap limits).
    function issuedTo(uint256 programmeId, address enterprise) external view returns (uint256);

    /// @notice Whether the invoice hash was already subsidised.
    function isInvoiceRedeemed(bytes32 invoiceHash) external view returns (bool);

    /// @notice Whether `enterprise` has used consent nonce `nonce`.
    function isNonceUsed(address enterprise, uint256 nonce) external view returns (bool);

    /// @notice Block timestamp at which `digest` was anchored, 0 if never.
    function anchoredAt(bytes32 digest) external view returns (uint256);

    /// @notice EIP-712 digest the enterprise signs to consent to `r` being redeemed by `provider`.
    function consentDigest(Redemption calldata r, address provider) external view returns (bytes32);

    /// @notice ERC-5633: every voucher is soulbound.
    function isSoulbound(uint256 id) external view returns (bool);
}

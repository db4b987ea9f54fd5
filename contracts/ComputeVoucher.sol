// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

import {ERC1155} from "@openzeppelin/contracts/token/ERC1155/ERC1155.sol";
import {AccessControlDefaultAdminRules} from
    "@openzeppelin/contracts/access/extensions/AccessControlDefaultAdminRules.sol";
import {Pausable} from "@openzeppelin/contracts/utils/Pausable.sol";
import {EIP712} from "@openzeppelin/contracts/utils/cryptography/EIP712.sol";
import {ECDSA} from "@openzeppelin/contracts/utils/cryptography/ECDSA.sol";
import {Math} from "@openzeppelin/contracts/utils/math/Math.sol";
import {IComputeVoucher} from "./IComputeVoucher.sol";

/// @title ComputeVoucher: non-transferable compute vouchers (算力券), one ERC-1155 id per programme
/// @notice Enterprises receive vouchers from issuers and approved providers burn them against paid invoices
/// with the enterprise's EIP-712 consent. Nothing ever moves between two holders. There is exactly one admin,
/// handed over in two steps with a delay: the ledger can never be left without one by a single transaction.
contract ComputeVoucher is IComputeVoucher, ERC1155, AccessControlDefaultAdminRules, Pausable, EIP712 {
    bytes32 public constant ISSUER_ROLE = keccak256("ISSUER_ROLE");
    bytes32 public constant FINANCE_ROLE = keccak256("FINANCE_ROLE");
    bytes32 public constant SUPERVISOR_ROLE = keccak256("SUPERVISOR_ROLE");

    /// @notice The EIP-712 type the enterprise signs: the claim's fields plus the provider that may redeem it.
    bytes32 public constant CONSENT_TYPEHASH = keccak256(
        "Consent(address enterprise,address provider,uint256 programmeId,uint256 amount,uint256 invoiceAmount,"
        "bytes32 invoiceHash,uint8 category,uint256 nonce,uint256 deadline)"
    );

    /// @dev ERC-5633 (soulbound multi-token) interface id: bytes4(keccak256("isSoulbound(uint256)")).
    bytes4 private constant _ERC5633_INTERFACE_ID = 0x911ec470;
    uint256 private constant _BPS = 10_000;
    /// @dev Wait between scheduling an admin handover (or renouncing) and its taking effect: a handover
    /// scheduled on a Friday evening is still pending on Monday morning, so supervisors watching
    /// DefaultAdminTransferScheduled can raise it before it lands. The admin may change it (itself delayed).
    uint48 private constant _ADMIN_TRANSFER_DELAY = 3 days;
    /// @dev Freeze reason code of a key retired by migrateHolder (the service's rotation uses the same code).
    uint32 private constant _RETIRED_REASON = 900;

    struct Account {
        Kind kind;
        bool frozen;
    }

    uint256 private _programmeCount;
    mapping(uint256 programmeId => Programme) private _programmes;
    mapping(uint256 programmeId => mapping(address provider => bool)) private _programmeProviders;
    mapping(uint256 programmeId => mapping(address enterprise => uint256)) private _issuedTo;
    mapping(address account => Account) private _accounts;
    mapping(address enterprise => mapping(address provider => bool)) private _relatedParties;
    mapping(bytes32 invoiceHash => bool) private _redeemedInvoices;
    /// @dev Unordered consent nonces, 256 per word, so concurrent claims need no ordering.
    mapping(address enterprise => mapping(uint256 word => uint256 bits)) private _nonceBitmap;
    mapping(bytes32 digest => uint256 timestamp) private _anchors;

    constructor(address admin, string memory uri_)
        ERC1155(uri_)
        AccessControlDefaultAdminRules(_ADMIN_TRANSFER_DELAY, admin)
        EIP712("ComputeVoucher", "1")
    {} // the admin rules refuse a zero admin (AccessControlInvalidDefaultAdmin)

    // ------------------------------------------------------------------ participants

    /// @inheritdoc IComputeVoucher
    function registerParticipant(address account, Kind kind, bytes32 ref) external onlyRole(DEFAULT_ADMIN_ROLE) {
        if (account == address(0)) revert ZeroAddress();
        Kind current = _accounts[account].kind;
        if (current != Kind.None) revert ParticipantAlreadyRegistered(account, current);
        if (kind == Kind.None) revert ParticipantKindMismatch(account, Kind.Enterprise, kind);
        _accounts[account].kind = kind;
        emit ParticipantRegistered(account, kind, ref);
    }

    /// @inheritdoc IComputeVoucher
    function freeze(address account, uint32 reasonCode) external onlyRole(SUPERVISOR_ROLE) {
        if (_accounts[account].frozen) revert AccountFrozenStateUnchanged(account, true);
        _accounts[account].frozen = true;
        emit AccountFrozen(account, reasonCode, _msgSender());
    }

    /// @inheritdoc IComputeVoucher
    function unfreeze(address account) external onlyRole(SUPERVISOR_ROLE) {
        if (!_accounts[account].frozen) revert AccountFrozenStateUnchanged(account, false);
        _accounts[account].frozen = false;
        emit AccountUnfrozen(account, _msgSender());
    }

    /// @inheritdoc IComputeVoucher
    function setRelatedParty(address enterprise, address provider, bool related)
        external
        onlyRole(DEFAULT_ADMIN_ROLE)
    {
        _requireKind(enterprise, Kind.Enterprise);
        _requireKind(provider, Kind.Provider);
        _relatedParties[enterprise][provider] = related;
        emit RelatedPartySet(enterprise, provider, related);
    }

    // ------------------------------------------------------------------ programmes

    /// @inheritdoc IComputeVoucher
    function createProgramme(ProgrammeParams calldata p)
        external
        onlyRole(DEFAULT_ADMIN_ROLE)
        returns (uint256 programmeId)
    {
        if (p.ratioBps == 0 || p.ratioBps > _BPS) revert ProgrammeInvalidRatio(p.ratioBps);
        if (p.validUntil <= p.validFrom || p.validUntil <= block.timestamp) {
            revert ProgrammeInvalidWindow(p.validFrom, p.validUntil);
        }
        if (p.budget == 0 || p.capPerEnterprise == 0 || p.capPerEnterprise > p.budget) {
            revert ProgrammeInvalidLimits(p.budget, p.capPerEnterprise);
        }
        if (p.categories == 0) revert ProgrammeNoCategories();

        programmeId = ++_programmeCount;
        Programme storage prog = _programmes[programmeId];
        prog.budget = p.budget;
        prog.capPerEnterprise = p.capPerEnterprise;
        prog.ratioBps = p.ratioBps;
        prog.validFrom = p.validFrom;
        prog.validUntil = p.validUntil;
        prog.categories = p.categories;
        emit ProgrammeCreated(
            programmeId, p.budget, p.capPerEnterprise, p.ratioBps, p.validFrom, p.validUntil, p.categories
        );
        for (uint256 i = 0; i < p.providers.length; ++i) {
            _setProgrammeProvider(programmeId, p.providers[i], true);
        }
    }

    /// @inheritdoc IComputeVoucher
    function setProgrammeProvider(uint256 programmeId, address provider, bool allowed)
        external
        onlyRole(DEFAULT_ADMIN_ROLE)
    {
        _requireProgramme(programmeId);
        _setProgrammeProvider(programmeId, provider, allowed);
    }

    // ------------------------------------------------------------------ issuance

    /// @inheritdoc IComputeVoucher
    function issue(uint256 programmeId, address enterprise, uint256 amount, bytes32 applicationRef)
        external
        onlyRole(ISSUER_ROLE)
    {
        Programme storage prog = _requireIssuable(programmeId);
        _issue(prog, programmeId, enterprise, amount, applicationRef);
    }

    /// @inheritdoc IComputeVoucher
    function issueBatch(
        uint256 programmeId,
        address[] calldata enterprises,
        uint256[] calldata amounts,
        bytes32[] calldata applicationRefs
    ) external onlyRole(ISSUER_ROLE) {
        if (enterprises.length != amounts.length || enterprises.length != applicationRefs.length) {
            revert BatchLengthMismatch(enterprises.length, amounts.length, applicationRefs.length);
        }
        Programme storage prog = _requireIssuable(programmeId);
        for (uint256 i = 0; i < enterprises.length; ++i) {
            _issue(prog, programmeId, enterprises[i], amounts[i], applicationRefs[i]);
        }
    }

    // ------------------------------------------------------------------ redemption

    /// @inheritdoc IComputeVoucher
    function redeem(Redemption calldata r, bytes calldata signature) external {
        address provider = _msgSender();
        _requireActive(provider, Kind.Provider);
        Programme storage prog = _requireProgramme(r.programmeId);
        if (!_programmeProviders[r.programmeId][provider]) revert ProviderNotInProgramme(r.programmeId, provider);
        if (block.timestamp < prog.validFrom) revert ProgrammeNotStarted(r.programmeId, prog.validFrom);
        if (block.timestamp >= prog.validUntil) revert ProgrammeExpired(r.programmeId, prog.validUntil);
        if (prog.categories & (uint256(1) << r.category) == 0) revert CategoryNotAllowed(r.programmeId, r.category);
        if (block.timestamp > r.deadline) revert ConsentExpired(r.deadline, block.timestamp);
        _requireActive(r.enterprise, Kind.Enterprise);
        if (_relatedParties[r.enterprise][provider]) revert RelatedPartyRedemption(r.enterprise, provider);
        if (r.amount == 0) revert ZeroAmount();
        uint256 maxSubsidy = Math.mulDiv(r.invoiceAmount, prog.ratioBps, _BPS);
        if (r.amount > maxSubsidy) revert RedemptionExceedsSubsidy(r.amount, maxSubsidy);
        if (_redeemedInvoices[r.invoiceHash]) revert InvoiceAlreadyRedeemed(r.invoiceHash);

        (address signer, ECDSA.RecoverError err,) = ECDSA.tryRecoverCalldata(consentDigest(r, provider), signature);
        if (err != ECDSA.RecoverError.NoError) revert ConsentSignatureInvalid();
        if (signer != r.enterprise) revert ConsentSignerMismatch(r.enterprise, signer);
        _useNonce(r.enterprise, r.nonce);

        _redeemedInvoices[r.invoiceHash] = true;
        // Cannot overflow: redeemed + amount <= issued (the burn below reverts otherwise), and issued fits uint128.
        prog.redeemed += uint128(r.amount);
        _burn(r.enterprise, r.programmeId, r.amount);
        emit VoucherRedeemed(
            r.programmeId, r.enterprise, provider, r.amount, r.invoiceAmount, r.invoiceHash, r.category, r.nonce
        );
    }

    // ------------------------------------------------------------------ expiry and supervision

    /// @inheritdoc IComputeVoucher
    function reclaim(uint256 programmeId, address[] calldata holders) external onlyRole(ISSUER_ROLE) {
        Programme storage prog = _requireProgramme(programmeId);
        if (block.timestamp < prog.validUntil) revert ProgrammeStillActive(programmeId, prog.validUntil);
        for (uint256 i = 0; i < holders.length; ++i) {
            uint256 amount = balanceOf(holders[i], programmeId);
            if (amount == 0) continue;
            // A holder's balance never exceeds the programme's issued total, which fits uint128.
            prog.reclaimed += uint128(amount);
            _burn(holders[i], programmeId, amount);
            emit VoucherReclaimed(programmeId, holders[i], amount, _available(prog));
        }
    }

    /// @inheritdoc IComputeVoucher
    function revoke(uint256 programmeId, address holder, uint256 amount, uint32 reasonCode)
        external
        onlyRole(SUPERVISOR_ROLE)
    {
        Programme storage prog = _requireProgramme(programmeId);
        if (amount == 0) revert ZeroAmount();
        // The burn reverts first if amount exceeds the balance, so the cast below never truncates.
        _burn(holder, programmeId, amount);
        prog.revoked += uint128(amount);
        emit VoucherRevoked(programmeId, holder, amount, reasonCode, _msgSender());
    }

    /// @inheritdoc IComputeVoucher
    function migrateHolder(address from, address to, uint256[] calldata programmeIds)
        external
        onlyRole(DEFAULT_ADMIN_ROLE)
    {
        _requireKind(from, Kind.Enterprise);
        _requireActive(to, Kind.Enterprise);
        if (from == to) revert MigrationTargetInvalid(from, to);
        // The retired key keeps no cap use: left active, it could be issued a second cap's worth.
        if (!_accounts[from].frozen) {
            _accounts[from].frozen = true;
            emit AccountFrozen(from, _RETIRED_REASON, _msgSender());
        }
        for (uint256 i = 0; i < programmeIds.length; ++i) {
            uint256 id = programmeIds[i];
            // The target is a fresh key: its own issuance would add to the cap it inherits.
            if (_issuedTo[id][to] != 0 || balanceOf(to, id) != 0) revert MigrationTargetInvalid(from, to);
            // The cap follows the enterprise to its new key, so a rotation never frees cap room.
            uint256 issued = _issuedTo[id][from];
            _issuedTo[id][to] = issued;
            _issuedTo[id][from] = 0;
            uint256 amount = balanceOf(from, id);
            if (amount != 0) {
                _burn(from, id, amount);
                _mint(to, id, amount, "");
            }
            // Also when nothing is held: the issued total moved, and the logs must say so.
            if (amount != 0 || issued != 0) emit VoucherMigrated(id, from, to, amount);
        }
    }

    /// @inheritdoc IComputeVoucher
    function anchor(bytes32 digest, bytes32 kind) external {
        address sender = _msgSender();
        if (!hasRole(FINANCE_ROLE, sender) && !hasRole(SUPERVISOR_ROLE, sender)) {
            revert AccessControlUnauthorizedAccount(sender, FINANCE_ROLE);
        }
        if (_anchors[digest] != 0) revert HashAlreadyAnchored(digest);
        _anchors[digest] = block.timestamp;
        emit HashAnchored(digest, kind, sender);
    }

    /// @inheritdoc IComputeVoucher
    function pause() external {
        address sender = _msgSender();
        if (!hasRole(DEFAULT_ADMIN_ROLE, sender) && !hasRole(SUPERVISOR_ROLE, sender)) {
            revert AccessControlUnauthorizedAccount(sender, SUPERVISOR_ROLE);
        }
        _pause();
    }

    /// @inheritdoc IComputeVoucher
    function unpause() external onlyRole(DEFAULT_ADMIN_ROLE) {
        _unpause();
    }

    // ------------------------------------------------------------------ views

    /// @inheritdoc IComputeVoucher
    function programme(uint256 programmeId) external view returns (Programme memory) {
        return _programmes[programmeId];
    }

    /// @inheritdoc IComputeVoucher
    function programmeCount() external view returns (uint256) {
        return _programmeCount;
    }

    /// @inheritdoc IComputeVoucher
    function participant(address account) external view returns (Kind kind, bool frozen) {
        Account storage a = _accounts[account];
        return (a.kind, a.frozen);
    }

    /// @inheritdoc IComputeVoucher
    function isProgrammeProvider(uint256 programmeId, address provider) external view returns (bool) {
        return _programmeProviders[programmeId][provider];
    }

    /// @inheritdoc IComputeVoucher
    function isRelatedParty(address enterprise, address provider) external view returns (bool) {
        return _relatedParties[enterprise][provider];
    }

    /// @inheritdoc IComputeVoucher
    function issuedTo(uint256 programmeId, address enterprise) external view returns (uint256) {
        return _issuedTo[programmeId][enterprise];
    }

    /// @inheritdoc IComputeVoucher
    function isInvoiceRedeemed(bytes32 invoiceHash) external view returns (bool) {
        return _redeemedInvoices[invoiceHash];
    }

    /// @inheritdoc IComputeVoucher
    function isNonceUsed(address enterprise, uint256 nonce) external view returns (bool) {
        return _nonceBitmap[enterprise][nonce >> 8] & (uint256(1) << (nonce & 0xff)) != 0;
    }

    /// @inheritdoc IComputeVoucher
    function anchoredAt(bytes32 digest) external view returns (uint256) {
        return _anchors[digest];
    }

    /// @inheritdoc IComputeVoucher
    function consentDigest(Redemption calldata r, address provider) public view returns (bytes32) {
        return _hashTypedDataV4(
            keccak256(
                abi.encode(
                    CONSENT_TYPEHASH,
                    r.enterprise,
                    provider,
                    r.programmeId,
                    r.amount,
                    r.invoiceAmount,
                    r.invoiceHash,
                    r.category,
                    r.nonce,
                    r.deadline
                )
            )
        );
    }

    /// @inheritdoc IComputeVoucher
    function isSoulbound(uint256) external pure returns (bool) {
        return true;
    }

    /// @inheritdoc ERC1155
    function supportsInterface(bytes4 interfaceId)
        public
        view
        override(ERC1155, AccessControlDefaultAdminRules)
        returns (bool)
    {
        return interfaceId == _ERC5633_INTERFACE_ID || super.supportsInterface(interfaceId);
    }

    // ------------------------------------------------------------------ policy hooks

    /// @dev The one place every balance change passes: mint (from == 0) only to an active enterprise, burn
    /// (to == 0) always, holder-to-holder never; nothing while paused.
    function _update(address from, address to, uint256[] memory ids, uint256[] memory values)
        internal
        override
        whenNotPaused
    {
        if (from != address(0) && to != address(0)) revert VoucherNonTransferable(from, to);
        if (from == address(0)) _requireActive(to, Kind.Enterprise);
        super._update(from, to, ids, values);
    }

    /// @dev Approvals would only ever serve transfers, which do not exist.
    function _setApprovalForAll(address owner, address operator, bool) internal pure override {
        revert VoucherApprovalDisabled(owner, operator);
    }

    // ------------------------------------------------------------------ internals

    function _issue(
        Programme storage prog,
        uint256 programmeId,
        address enterprise,
        uint256 amount,
        bytes32 applicationRef
    ) private {
        if (amount == 0) revert ZeroAmount();
        uint256 available = _available(prog);
        if (amount > available) revert ProgrammeBudgetExceeded(programmeId, available, amount);
        uint256 already = _issuedTo[programmeId][enterprise];
        uint256 capLeft = already >= prog.capPerEnterprise ? 0 : prog.capPerEnterprise - already;
        if (amount > capLeft) revert EnterpriseCapExceeded(programmeId, enterprise, capLeft, amount);
        _issuedTo[programmeId][enterprise] = already + amount;
        // amount <= available <= budget, which is a uint128, so the cast keeps every bit.
        prog.issued += uint128(amount);
        _mint(enterprise, programmeId, amount, "");
        emit VoucherIssued(programmeId, enterprise, amount, applicationRef);
    }

    /// @dev Budget left for issuance: what was reclaimed or revoked went back to it.
    function _available(Programme storage prog) private view returns (uint256) {
        // Cannot underflow: issued - reclaimed - revoked is what is outstanding or spent, kept <= budget.
        unchecked {
            return uint256(prog.budget) - (uint256(prog.issued) - prog.reclaimed - prog.revoked);
        }
    }

    function _useNonce(address enterprise, uint256 nonce) private {
        uint256 bit = uint256(1) << (nonce & 0xff);
        uint256 word = _nonceBitmap[enterprise][nonce >> 8];
        if (word & bit != 0) revert ConsentNonceUsed(enterprise, nonce);
        _nonceBitmap[enterprise][nonce >> 8] = word | bit;
    }

    function _setProgrammeProvider(uint256 programmeId, address provider, bool allowed) private {
        if (allowed) _requireKind(provider, Kind.Provider);
        _programmeProviders[programmeId][provider] = allowed;
        emit ProgrammeProviderSet(programmeId, provider, allowed);
    }

    function _requireProgramme(uint256 programmeId) private view returns (Programme storage prog) {
        prog = _programmes[programmeId];
        if (prog.validUntil == 0) revert ProgrammeNotFound(programmeId);
    }

    function _requireIssuable(uint256 programmeId) private view returns (Programme storage prog) {
        prog = _requireProgramme(programmeId);
        if (block.timestamp >= prog.validUntil) revert ProgrammeExpired(programmeId, prog.validUntil);
    }

    function _requireKind(address account, Kind kind) private view {
        Kind actual = _accounts[account].kind;
        if (actual != kind) revert ParticipantKindMismatch(account, kind, actual);
    }

    function _requireActive(address account, Kind kind) private view {
        _requireKind(account, kind);
        if (_accounts[account].frozen) revert AccountIsFrozen(account);
    }
}

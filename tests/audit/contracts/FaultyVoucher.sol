// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

import {IERC1155} from "@openzeppelin/contracts/token/ERC1155/IERC1155.sol";
import {IComputeVoucher} from "../../../contracts/IComputeVoucher.sol";

/// @title FaultyVoucher: emits ComputeVoucher's events but keeps none of its rules
/// @notice For the audit's tests only. The honest functions (issue, redeem, revoke) keep balances, totals and
/// logs consistent but check nothing, so a test can break a rule on purpose; each `break*` function breaks the
/// bookkeeping itself in one way. The views answer what `voucher audit verify` reads.
contract FaultyVoucher {
    uint256 private _programmeCount;
    mapping(uint256 programmeId => IComputeVoucher.Programme) private _programmes;
    mapping(address holder => mapping(uint256 id => uint256)) private _balances;
    mapping(uint256 programmeId => mapping(address enterprise => uint256)) private _issuedTo;
    mapping(bytes32 invoiceHash => bool) private _redeemedInvoices;
    mapping(bytes32 digest => uint256 timestamp) private _anchors;

    // ------------------------------------------------------------------ honest bookkeeping, no checks

    function createProgramme(uint128 budget, uint128 capPerEnterprise, uint16 ratioBps) external returns (uint256 id) {
        id = ++_programmeCount;
        IComputeVoucher.Programme storage p = _programmes[id];
        p.budget = budget;
        p.capPerEnterprise = capPerEnterprise;
        p.ratioBps = ratioBps;
        p.validFrom = uint64(block.timestamp);
        p.validUntil = uint64(block.timestamp + 365 days);
        p.categories = 1;
        emit IComputeVoucher.ProgrammeCreated(id, budget, capPerEnterprise, ratioBps, p.validFrom, p.validUntil, 1);
    }

    /// @notice Issues without the budget or cap checks.
    function issue(uint256 id, address to, uint256 amount) external {
        _programmes[id].issued += uint128(amount);
        _issuedTo[id][to] += amount;
        _mint(to, id, amount);
        emit IComputeVoucher.VoucherIssued(id, to, amount, bytes32(0));
    }

    /// @notice Redeems without the subsidy-ratio or single-use invoice checks.
    function redeem(uint256 id, address holder, uint256 amount, uint256 invoiceAmount, bytes32 invoiceHash) external {
        _programmes[id].redeemed += uint128(amount);
        _redeemedInvoices[invoiceHash] = true;
        _burn(holder, id, amount);
        emit IComputeVoucher.VoucherRedeemed(id, holder, msg.sender, amount, invoiceAmount, invoiceHash, 0, 0);
    }

    /// @notice Issues to one enterprise in several programmes with a single TransferBatch log.
    function issueMany(address to, uint256[] calldata ids, uint256[] calldata amounts) external {
        for (uint256 i = 0; i < ids.length; ++i) {
            _programmes[ids[i]].issued += uint128(amounts[i]);
            _issuedTo[ids[i]][to] += amounts[i];
            _balances[to][ids[i]] += amounts[i];
        }
        emit IERC1155.TransferBatch(msg.sender, address(0), to, ids, amounts);
        for (uint256 i = 0; i < ids.length; ++i) {
            emit IComputeVoucher.VoucherIssued(ids[i], to, amounts[i], bytes32(0));
        }
    }

    function revoke(uint256 id, address holder, uint256 amount) external {
        _programmes[id].revoked += uint128(amount);
        _burn(holder, id, amount);
        emit IComputeVoucher.VoucherRevoked(id, holder, amount, 1, msg.sender);
    }

    function anchor(bytes32 digest) external {
        _anchors[digest] = block.timestamp;
        emit IComputeVoucher.HashAnchored(digest, bytes32("audit"), msg.sender);
    }

    // ------------------------------------------------------------------ broken bookkeeping, one rule each

    /// @notice Moves vouchers from one holder to another.
    function breakTransfer(address from, address to, uint256 id, uint256 amount) external {
        _balances[from][id] -= amount;
        _balances[to][id] += amount;
        emit IERC1155.TransferSingle(msg.sender, from, to, id, amount);
    }

    /// @notice Emits a redemption (and counts it) without burning anything.
    function breakRedeemWithoutBurn(uint256 id, address holder, uint256 amount, bytes32 invoiceHash) external {
        _programmes[id].redeemed += uint128(amount);
        _redeemedInvoices[invoiceHash] = true;
        emit IComputeVoucher.VoucherRedeemed(id, holder, msg.sender, amount, amount * 2, invoiceHash, 0, 0);
    }

    /// @notice Changes a balance without a transfer log.
    function breakBalance(address holder, uint256 id, uint256 amount) external {
        _balances[holder][id] = amount;
    }

    /// @notice Counts issuance that no event reports.
    function breakIssuedTotal(uint256 id, uint128 amount) external {
        _programmes[id].issued += amount;
    }

    /// @notice Changes an enterprise's issued total (what the cap limits) without an event.
    function breakIssuedTo(uint256 id, address enterprise, uint256 amount) external {
        _issuedTo[id][enterprise] = amount;
    }

    /// @notice Forgets that an invoice was subsidised.
    function breakInvoice(bytes32 invoiceHash) external {
        _redeemedInvoices[invoiceHash] = false;
    }

    /// @notice Emits an anchor without recording it.
    function breakAnchor(bytes32 digest) external {
        emit IComputeVoucher.HashAnchored(digest, bytes32("audit"), msg.sender);
    }

    // ------------------------------------------------------------------ the views the audit reads

    function balanceOf(address holder, uint256 id) public view returns (uint256) {
        return _balances[holder][id];
    }

    function balanceOfBatch(address[] calldata holders, uint256[] calldata ids)
        external
        view
        returns (uint256[] memory balances)
    {
        balances = new uint256[](holders.length);
        for (uint256 i = 0; i < holders.length; ++i) {
            balances[i] = _balances[holders[i]][ids[i]];
        }
    }

    function programme(uint256 id) external view returns (IComputeVoucher.Programme memory) {
        return _programmes[id];
    }

    function programmeCount() external view returns (uint256) {
        return _programmeCount;
    }

    function issuedTo(uint256 id, address enterprise) external view returns (uint256) {
        return _issuedTo[id][enterprise];
    }

    function isInvoiceRedeemed(bytes32 invoiceHash) external view returns (bool) {
        return _redeemedInvoices[invoiceHash];
    }

    function anchoredAt(bytes32 digest) external view returns (uint256) {
        return _anchors[digest];
    }

    // ------------------------------------------------------------------ internals

    function _mint(address to, uint256 id, uint256 amount) private {
        _balances[to][id] += amount;
        emit IERC1155.TransferSingle(msg.sender, address(0), to, id, amount);
    }

    function _burn(address from, uint256 id, uint256 amount) private {
        _balances[from][id] -= amount;
        emit IERC1155.TransferSingle(msg.sender, from, address(0), id, amount);
    }
}

/**
 * The mutants `npm run mutate` (scripts/mutate.ts) applies to contracts/ChannelEscrow.sol, one at a time.
 *
 * Each mutation replaces `find` by `replace`. `find` must occur exactly once in the source; runs of whitespace in it
 * match any run of whitespace (so re-indenting the contract does not make the list stale, but changing the code
 * does: the script then refuses to run and names the stale entries). Keep `find` as short as is unique; include a
 * neighbouring line to tell apart the checks that are written the same way in several functions.
 *
 * kind "safety": the mutated line guards money or who may move it (a surviving safety mutant is a missing test or
 * an equivalent mutant that docs/escrow-assurance.md explains). kind "other": liveness, diagnostics, gas bounds.
 * `expect: "equivalent"` marks a mutant known to behave like the original (documented, so a survivor is expected).
 */
export interface Mutation {
  id: string;
  kind: "safety" | "other";
  description: string;
  find: string;
  replace: string;
  expect?: "equivalent";
}

export const TARGET = "ChannelEscrow.sol";

export const MUTATIONS: Mutation[] = [
  // ------------------------------------------------------------------ settle hot path (_settleRun, assembly)
  {
    id: "settle-amount-ge-settled",
    kind: "safety",
    description: "settle hot path: `amount > settled` becomes `amount >= settled` (a replayed voucher settles again)",
    find: "iszero(gt(amount, settled))",
    replace: "lt(amount, settled)",
  },
  {
    id: "settle-amount-gt-settled-dropped",
    kind: "safety",
    description: "settle hot path: `amount > settled` dropped (an older voucher underflows the subtotal)",
    find: "iszero(gt(amount, settled))",
    replace: "0",
  },
  {
    id: "settle-cumulative-off-by-one",
    kind: "safety",
    description: "settle hot path: `amount <= cumulative` becomes `amount <= cumulative + 1`",
    find: "gt(amount, cumulative)",
    replace: "gt(amount, add(cumulative, 1))",
  },
  {
    id: "settle-deposit-off-by-one",
    kind: "safety",
    description: "settle hot path: `amount <= deposit` becomes `amount <= deposit + 1`",
    find: "gt(amount, and(state, _AMOUNT_MASK))",
    replace: "gt(amount, add(and(state, _AMOUNT_MASK), 1))",
  },
  {
    id: "settle-finalized-dropped",
    kind: "safety",
    description: "settle hot path: the finalized check dropped (a closed channel settles again)",
    find: "or(iszero(signer), and(state, _FINALIZED_BIT))",
    replace: "iszero(signer)",
  },
  {
    id: "settle-zero-signer-dropped",
    kind: "safety",
    description: "settle hot path: `iszero(signer)` dropped (a failed ecrecover's address(0) is not refused)",
    find: "or(iszero(signer), and(state, _FINALIZED_BIT))",
    replace: "and(state, _FINALIZED_BIT)",
    expect: "equivalent",
  },
  {
    id: "settle-high-s-dropped",
    kind: "safety",
    description:
      "settle hot path: the low-s gate `gt(s, HALF_N)` dropped. Equivalent in practice: the compact (EIP-2098) form caps s below 2^255, " +
      "so a low-s signature's high-s twin n − s fits only when s lies within ≈ 2^127 below n/2 (≈ 2^-128 of signatures); no test can build one",
    find: "if iszero(gt(s, HALF_N)) { pop(staticcall(gas(), 0x01, ec, 0x80, 0x00, 0x20)) }",
    replace: "pop(staticcall(gas(), 0x01, ec, 0x80, 0x00, 0x20))",
    expect: "equivalent",
  },
  {
    id: "settle-settled-written-as-delta",
    kind: "safety",
    description: "settle hot path: settled written as `amount - settled` instead of `amount`",
    find: "shl(_SETTLED_SHIFT, amount)))",
    replace: "shl(_SETTLED_SHIFT, sub(amount, settled))))",
  },
  {
    id: "settle-subtotal-cumulative",
    kind: "safety",
    description: "settle hot path: the payout adds the cumulative `amount` instead of `amount - settled`",
    find: "subtotal := add(subtotal, sub(amount, settled))",
    replace: "subtotal := add(subtotal, amount)",
  },
  // ------------------------------------------------------------------ settle with ERC-1271 items
  {
    id: "contract-signed-signature-dropped",
    kind: "safety",
    description: "settleContractSigned: the item's ERC-1271 signature is not checked (the claimed signer is trusted)",
    find: "_isValidContractSignature(item.signer, digest, item.signature) ? item.signer : address(0)",
    replace: "item.signer",
  },
  // ------------------------------------------------------------------ close
  {
    id: "close-voucher-off-by-one",
    kind: "safety",
    description: "close: `amount <= cumulativeAmount` becomes `amount <= cumulativeAmount + 1`",
    find: "if (amount > cumulativeAmount) revert",
    replace: "if (amount > cumulativeAmount + 1) revert",
  },
  {
    id: "close-deposit-off-by-one",
    kind: "safety",
    description: "close: `amount <= deposit` becomes `amount <= deposit + 1`",
    find: "if (amount > deposit) revert",
    replace: "if (amount > deposit + 1) revert",
  },
  {
    id: "close-signature-dropped",
    kind: "safety",
    description: "close: the voucher signature is not checked (_checkClaim)",
    find: "if (!_isValidSignature(signer, digest, signature)) revert InvalidSignature(channelId);",
    replace: "",
  },
  {
    id: "close-finalized-dropped",
    kind: "safety",
    description: "close: the finalized check dropped (a closed channel is closed again)",
    find: "_checkPayeeOrOperator(c.payee);\n        if (c.state & _FINALIZED_BIT != 0) revert ChannelFinalized(channelId);",
    replace: "_checkPayeeOrOperator(c.payee);",
  },
  {
    id: "close-not-finalizing",
    kind: "safety",
    description: "close: the stored state lacks the finalized bit",
    find: "deposit | (settled << _SETTLED_SHIFT) | _FINALIZED_BIT",
    replace: "deposit | (settled << _SETTLED_SHIFT)",
  },
  {
    id: "close-refund-from-old-settled",
    kind: "safety",
    description: "close: refund = deposit − settled computed with the settled amount from before the claim",
    find: "uint256 refund = deposit - settled;",
    replace: "uint256 refund = deposit - ((c.state >> _SETTLED_SHIFT) & _AMOUNT_MASK);",
  },
  {
    id: "close-consent-dropped",
    kind: "safety",
    description: "close: an operator's refunding close needs no payer consent (_checkCloseConsent not called)",
    find: "if (refund != 0 && msg.sender != c.payee) _checkCloseConsent(channelId, c, closeRequestSignature);",
    replace: "",
  },
  {
    id: "consent-pending-shortcut-inverted",
    kind: "safety",
    description: "_checkCloseConsent: the pending-close shortcut inverted (consent assumed when no close is pending)",
    find: "if (_records[channelId].closeRequestedAt != 0) return;",
    replace: "if (_records[channelId].closeRequestedAt == 0) return;",
  },
  {
    id: "consent-pending-shortcut-dropped",
    kind: "other",
    description: "_checkCloseConsent: the pending-close shortcut dropped (an operator then needs a signature even after requestClose)",
    find: "if (_records[channelId].closeRequestedAt != 0) return;",
    replace: "",
  },
  {
    id: "consent-payer-signature-dropped",
    kind: "other",
    description: "_checkCloseConsent: a CloseRequest signed by the payer (rather than the signer) is not accepted",
    find: "if (_isValidSignature(c.payer, digest, closeRequestSignature)) return;",
    replace: "",
  },
  // ------------------------------------------------------------------ withdraw
  {
    id: "withdraw-one-second-early",
    kind: "safety",
    description: "withdraw: `block.timestamp < closesAt` becomes `block.timestamp + 1 < closesAt` (one second early)",
    find: "if (block.timestamp < closesAt) revert",
    replace: "if (block.timestamp + 1 < closesAt) revert",
  },
  {
    id: "withdraw-one-second-late",
    kind: "other",
    description: "withdraw: `block.timestamp < closesAt` becomes `block.timestamp <= closesAt` (one second late)",
    find: "if (block.timestamp < closesAt) revert",
    replace: "if (block.timestamp <= closesAt) revert",
  },
  {
    id: "withdraw-finalized-dropped",
    kind: "safety",
    description: "withdraw: the finalized check dropped (a second withdraw refunds again)",
    find: "Loaded memory c = _load(channelId, signer);\n        if (c.state & _FINALIZED_BIT != 0) revert ChannelFinalized(channelId);",
    replace: "Loaded memory c = _load(channelId, signer);",
  },
  {
    id: "withdraw-refunds-deposit",
    kind: "safety",
    description: "withdraw: refund = deposit instead of deposit − settled",
    find: "uint256 refund = (c.state & _AMOUNT_MASK) - ((c.state >> _SETTLED_SHIFT) & _AMOUNT_MASK);",
    replace: "uint256 refund = (c.state & _AMOUNT_MASK);",
  },
  // ------------------------------------------------------------------ topUp, requestClose
  {
    id: "topup-max-deposit-off-by-one",
    kind: "safety",
    description: "topUp: `deposit <= MAX_DEPOSIT` becomes `deposit <= MAX_DEPOSIT + 1` (the deposit overflows into settled)",
    find: "if (deposit > MAX_DEPOSIT) revert",
    replace: "if (deposit > MAX_DEPOSIT + 1) revert",
  },
  {
    id: "topup-finalized-dropped",
    kind: "safety",
    description: "topUp: the finalized check dropped (money added to a closed channel is stuck)",
    find: "revert NotPayer(channelId, msg.sender);\n        if (c.state & _FINALIZED_BIT != 0) revert ChannelFinalized(channelId);",
    replace: "revert NotPayer(channelId, msg.sender);",
  },
  {
    id: "topup-not-payer-dropped",
    kind: "safety",
    description: "topUp: NotPayer dropped (anyone can top up, which also cancels a pending close)",
    find: "if (c.payer != msg.sender) revert NotPayer(channelId, msg.sender);",
    replace: "",
  },
  {
    id: "request-close-finalized-dropped",
    kind: "safety",
    description: "requestClose: the finalized check dropped",
    find: "revert NotPayerOrSigner(channelId, msg.sender);\n        if (c.state & _FINALIZED_BIT != 0) revert ChannelFinalized(channelId);",
    replace: "revert NotPayerOrSigner(channelId, msg.sender);",
  },
  {
    id: "request-close-caller-dropped",
    kind: "safety",
    description: "requestClose: NotPayerOrSigner dropped (anyone can start the close clock)",
    find: "if (msg.sender != c.payer && msg.sender != c.signer) revert NotPayerOrSigner(channelId, msg.sender);",
    replace: "",
  },
  {
    id: "request-close-already-requested-dropped",
    kind: "safety",
    description: "requestClose: CloseAlreadyRequested dropped (a second request restarts the clock)",
    find: "if (requestedAt != 0) revert CloseAlreadyRequested(channelId, requestedAt + rec.closeDelay);",
    replace: "",
  },
  // ------------------------------------------------------------------ callers, signatures
  {
    id: "payee-or-operator-dropped",
    kind: "safety",
    description: "_checkPayeeOrOperator: no caller check (anyone can settle or close for a payee)",
    find: "if (msg.sender != payee && !_operators[payee][msg.sender]) revert NotPayeeOrOperator(payee, msg.sender);",
    replace: "",
  },
  {
    id: "ecdsa-high-s-dropped",
    kind: "safety",
    description: "_recoverEcdsa (close, close requests): the low-s gate `gt(s, HALF_N)` dropped",
    find: "if and(iszero(gt(s, HALF_N)), or(eq(v, 27), eq(v, 28))) {",
    replace: "if or(eq(v, 27), eq(v, 28)) {",
  },
  {
    id: "erc1271-magic-4-bytes",
    kind: "safety",
    description: "_isValidContractSignature: the magic value compared on its first 4 bytes only",
    find: "eq(mload(0x00), shl(224, 0x1626ba7e))",
    replace: "eq(shr(224, mload(0x00)), 0x1626ba7e)",
  },
  {
    id: "erc1271-returndatasize-dropped",
    kind: "safety",
    description: "_isValidContractSignature: `returndatasize() >= 0x20` dropped (a 4-byte answer passes)",
    find: "and(and(ok, iszero(lt(returndatasize(), 0x20))), eq(",
    replace: "and(ok, eq(",
  },
  // ------------------------------------------------------------------ token movements
  {
    id: "received-check-dropped",
    kind: "safety",
    description: "_checkReceived dropped (a fee-on-transfer token credits more than the escrow received)",
    find: "if (received != amount) revert TransferAmountMismatch(token, amount, received);",
    replace: "",
  },
  {
    id: "transfer-out-of-gas-dropped",
    kind: "safety",
    description: "_send: a transfer that ran out of gas is deferred to owed instead of reverting (TransferOutOfGas)",
    find: "if (gasleft() <= gasBefore / 63) revert TransferOutOfGas(token, to);",
    replace: "",
  },
  {
    id: "collect-owed-not-zeroed",
    kind: "safety",
    description: "collect: `_owed[token][msg.sender] = 0` dropped (owed money can be collected again)",
    find: "_owed[token][msg.sender] = 0;",
    replace: "",
  },
  {
    id: "deferral-not-recorded",
    kind: "safety",
    description: "_send: `_owed[token][to] += amount` dropped (a failed payout or refund is lost)",
    find: "_owed[token][to] += amount;",
    replace: "",
  },
  {
    id: "send-reverts-on-failure",
    kind: "safety",
    description: "_send: a refused transfer reverts the call (the behaviour before finding 3 was fixed: claims depend on delivery)",
    find: "if (IERC20(token).trySafeTransfer(to, amount)) return;",
    replace: "IERC20(token).safeTransfer(to, amount);\n        return;",
  },
  {
    id: "collect-recipient-check-dropped",
    kind: "other",
    description: "collect: InvalidRecipient dropped (collect to address(0) or to the escrow itself)",
    find: "if (to == address(0) || to == address(this)) revert InvalidRecipient(to);",
    replace: "",
  },
  // ------------------------------------------------------------------ open
  {
    id: "close-delay-min-off-by-one",
    kind: "safety",
    description: "open: `closeDelay >= MIN_CLOSE_DELAY` becomes `closeDelay >= MIN_CLOSE_DELAY - 1`",
    find: "closeDelay < MIN_CLOSE_DELAY ||",
    replace: "closeDelay + 1 < MIN_CLOSE_DELAY ||",
  },
  {
    id: "close-delay-max-dropped",
    kind: "safety",
    description: "open: the upper bound dropped (a delay above 2^24 − 1 is truncated to uint24 when stored)",
    find: "if (closeDelay < MIN_CLOSE_DELAY || closeDelay > MAX_CLOSE_DELAY) {",
    replace: "if (closeDelay < MIN_CLOSE_DELAY) {",
  },
  {
    id: "channel-exists-dropped",
    kind: "safety",
    description: "open: ChannelExists dropped (re-opening an id overwrites its deposit and settled amount)",
    find: "if (rec.payer != address(0)) revert ChannelExists(channelId);",
    replace: "",
  },
];

/**
 * Escrow review, finding 4: a contract signer's approval is revocable. A channel whose signer is an ERC-1271 wallet
 * (contracts/mocks/ERC1271Wallet.sol) accepts on chain the vouchers its owner key signs — but the payer controls the
 * wallet and can make it stop validating them (a new owner, a new mode) once served, leaving the provider with
 * vouchers worth nothing. So the server keeps accepting key (ECDSA) signers only: such a voucher gets 402
 * `invalid_signature` and the route serves nothing, although the wallet would validate it on chain at that moment.
 * Real server on an ephemeral port, real escrow and wallet on the in-process chain.
 */
import { expect } from "chai";
import hre from "hardhat";
import { getAddress, keccak256, toHex, type Address, type Hex } from "viem";
import { privateKeyToAccount } from "viem/accounts";
import { channelEscrowAbi, computeChannelId, VoucherHasher, VoucherSigner, type ChannelRequirements } from "@paychan/protocol";
import { mockUsdcAbi } from "@paychan/demo";
import { DAY, openChannel, sessionKey, USDC } from "../helpers/escrow";
import { call, startTestServer, type Answer, type TestServer } from "../helpers/server";
import { revertTo, snapshot } from "../helpers/chain";

const ERC1271_MAGIC = "0x1626ba7e";
const MODE = { Valid: 0, Invalid: 1 } as const;

describe("server: channels whose signer is a contract (ERC-1271) are refused (finding 4: contract signers are revocable)", function () {
  this.timeout(120_000);
  let srv: TestServer;
  let snap: string;
  let served = 0;
  let terms: ChannelRequirements;
  const paid = () => `${srv.url}/v1/paid`;

  before(async () => {
    snap = await snapshot();
    srv = await startTestServer({
      routes: (app, paywall) =>
        app.get("/v1/paid", paywall.charge({ price: "0.001" }), (_req, res) => {
          served++;
          res.json({ served: true });
        }),
    });
    terms = await srv.terms("/v1/paid");
  });
  after(async () => {
    await srv?.close();
    if (snap) await revertTo(snap);
  });

  /** An ERC-1271 wallet owned by a fresh key, and a 5 USDC channel from account #1 whose signer is the wallet. */
  async function walletChannel(): Promise<{ id: Hex; wallet: Address; ownerKey: Hex; setMode(m: number): Promise<void> }> {
    const { key: ownerKey } = sessionKey();
    const wallet = await hre.viem.deployContract("ERC1271Wallet", [privateKeyToAccount(ownerKey).address, MODE.Valid]);
    const payerWallet = srv.env.wallets[1];
    const payer = getAddress(payerWallet.account.address);
    const deposit = USDC(5);
    const salt = keccak256(toHex(`contract-signer-${wallet.address}`));
    const wait = async (hash: Hex) => void (await srv.env.publicClient.waitForTransactionReceipt({ hash }));
    await wait(await payerWallet.writeContract({ address: srv.token, abi: mockUsdcAbi, functionName: "mint", args: [payer, deposit] }));
    await wait(await payerWallet.writeContract({ address: srv.token, abi: mockUsdcAbi, functionName: "approve", args: [srv.escrow, deposit] }));
    await wait(
      await payerWallet.writeContract({ address: srv.escrow, abi: channelEscrowAbi, functionName: "open", args: [srv.payee, srv.token, wallet.address, deposit, DAY, salt] }),
    );
    const id = computeChannelId({ chainId: srv.chainId, escrow: srv.escrow, payer, payee: srv.payee, token: srv.token, signer: wallet.address, salt });
    const c = await srv.env.publicClient.readContract({ address: srv.escrow, abi: channelEscrowAbi, functionName: "getChannel", args: [id, wallet.address] });
    expect(getAddress(c.signer)).to.equal(getAddress(wallet.address)); // the channel's signer is the contract
    return {
      id,
      wallet: wallet.address,
      ownerKey,
      setMode: async (m) => wait(await wallet.write.setMode([m])),
    };
  }

  /** What the wallet answers for `signature` over the voucher's digest, as the escrow would ask it. */
  async function walletAnswer(wallet: Address, id: Hex, amount: bigint, signature: Hex): Promise<Hex> {
    const digest = await srv.env.publicClient.readContract({ address: srv.escrow, abi: channelEscrowAbi, functionName: "voucherDigest", args: [id, amount] });
    expect(digest).to.equal(new VoucherHasher(srv.domain).digest(id, amount)); // the escrow's digest = the protocol's
    const w = await hre.viem.getContractAt("ERC1271Wallet", wallet);
    return (await w.read.isValidSignature([digest, signature])) as Hex;
  }

  function expectRefused(a: Answer): void {
    expect(a.status, JSON.stringify(a.body)).to.equal(402);
    expect(a.code).to.equal("invalid_signature");
    expect(a.required?.error).to.equal("invalid_signature");
    expect(a.body.detail).to.match(/only key \(ECDSA\) signers are accepted, not contract \(ERC-1271\) signers/);
    expect(a.body).to.not.have.property("served");
  }

  it("refuses a voucher signed by the wallet's owner key (which the wallet validates on chain) with 402 invalid_signature and serves nothing", async () => {
    const { id, wallet, ownerKey, setMode } = await walletChannel();
    const voucher = new VoucherSigner(ownerKey, srv.domain).sign(id, 1_000n);
    // The voucher means something: the wallet, the channel's signer, validates it on chain right now.
    expect(await walletAnswer(wallet, id, voucher.cumulativeAmount, voucher.signature)).to.equal(ERC1271_MAGIC);
    const servedBefore = served;

    // The server reads a channel it has not stored with the signer it recovers from the voucher (the owner key), which
    // is not the channel's signer (the wallet): a signer-mismatch read, no money, no hint.
    const first = await call(paid(), { headers: srv.pay(terms, voucher) });
    expectRefused(first);
    expect(first.body.detail).to.contain(id);
    expect(first.required!.accepts[0].extra.channel, "no hint from a wrong-signer read").to.equal(undefined);

    // The event follower does not make it known either (it follows channels the server stored, and only an accepted
    // voucher stores one): the same voucher, a higher one, all refused; nothing served, nothing stored.
    await srv.sync();
    expectRefused(await call(paid(), { headers: srv.pay(terms, voucher) }));
    expectRefused(await call(paid(), { headers: srv.pay(terms, new VoucherSigner(ownerKey, srv.domain).sign(id, 2_000n)) }));
    expect(served).to.equal(servedBefore);
    expect(await srv.store.getChannel(id)).to.equal(null);

    // Why: the payer can revoke what the wallet validated once served (here by switching its mode).
    await setMode(MODE.Invalid);
    expect(await walletAnswer(wallet, id, voucher.cumulativeAmount, voucher.signature)).to.not.equal(ERC1271_MAGIC);
  });

  it("control: the same route serves a channel whose signer is a key", async () => {
    const ch = await openChannel(srv.env, { deposit: USDC(1) });
    const before = served;
    const a = await call(paid(), { headers: srv.pay(terms, ch.voucher.sign(ch.id, 1_000n)) });
    expect(a.status, JSON.stringify(a.body)).to.equal(200);
    expect(a.body).to.deep.equal({ served: true });
    expect(served).to.equal(before + 1);
  });
});

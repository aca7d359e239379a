import { expect } from "chai";
import { decodePaymentResponse } from "../../protocol";
import { openChannel } from "../helpers/escrow";
import { startTestServer, type TestServer } from "../helpers/server";

describe("server smoke", () => {
  let srv: TestServer;
  before(async () => {
    srv = await startTestServer();
  });
  after(async () => srv?.close());

  it("serves a paid echo", async () => {
    const ch = await openChannel(srv.env);
    const terms = await srv.terms("/v1/echo?msg=hi");
    const res = await fetch(`${srv.url}/v1/echo?msg=hi`, { headers: srv.pay(terms, ch.voucher.sign(ch.id, 1000n)) });
    const body = await res.text();
    expect(res.status, body).to.equal(200);
    const r = decodePaymentResponse(res.headers.get("payment-response"));
    expect(r.amount).to.equal(1000n);
  });
});

using System.Globalization;
using System.Text.Json;
using Coordinator.Grains.Receipts;
using Coordinator.Tests.Infrastructure;
using Coordinator.Tests.Receipts;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Playwright;

namespace Coordinator.Tests.Dashboard;

/// <summary>The job page shows the job's signed receipt and checks its signature on request.</summary>
public sealed class ReceiptDashboardTests(BrowserFixture fixture) : IClassFixture<BrowserFixture>
{
    private GridHost Host => fixture.Host;

    [Fact]
    public async Task JobPage_ShowsTheReceipt_AndVerifyingItFindsAValidSignature()
    {
        var page = await fixture.NewPageAsync();
        var client = Host.WithKey(await SignUpAsync(page, "receipt-viewer"));
        var receipt = await TestReceipts.CompleteWithReceiptAsync(Host, client, await Host.NewAccountAsync("provider"));

        await page.GotoAsync($"/jobs/{receipt.JobId}");
        await Assertions.Expect(page.Locator("#receipt-id")).ToHaveTextAsync(receipt.ReceiptId);
        var fields = page.Locator("#receipt-fields");
        await Assertions.Expect(fields.Locator("[data-field='client']")).ToHaveTextAsync(receipt.Client);
        await Assertions.Expect(fields.Locator("[data-field='provider']")).ToHaveTextAsync(receipt.Provider);
        using var signed = JsonDocument.Parse(receipt.Body);
        var keyId = signed.RootElement.GetProperty("signature").GetProperty("key_id").GetString()!;
        await Assertions.Expect(fields.Locator("[data-field='units']")).ToHaveTextAsync(signed.RootElement.GetProperty("units").GetRawText());
        await Assertions.Expect(fields.Locator("[data-field='unit_type']")).ToHaveTextAsync("gpu_seconds");
        await Assertions.Expect(fields.Locator("[data-field='price']")).ToHaveTextAsync(signed.RootElement.GetProperty("price").GetRawText());
        await Assertions.Expect(fields.Locator("[data-field='completed_at'] time")).ToHaveCountAsync(1);
        await Assertions.Expect(page.Locator("#receipt-key")).ToHaveTextAsync(keyId);
        await Assertions.Expect(page.Locator("#receipt-json")).ToHaveTextAsync(receipt.Body);
        var aitbcPort = Host.Aitbc.BaseAddress!.Port.ToString(CultureInfo.InvariantCulture);
        await Assertions.Expect(page.Locator("#receipt-url")).ToHaveTextAsync($"http://127.0.0.1:{aitbcPort}/v1/receipts/{receipt.ReceiptId}");
        await Assertions.Expect(page.Locator("#receipt-python")).ToContainTextAsync("""json.dumps({k: v for k, v in receipt.items() if v is not None}, sort_keys=True, separators=(",", ":"))""");
        await Assertions.Expect(page.Locator("#receipt-verdict")).ToHaveCountAsync(0);

        await page.GetByRole(AriaRole.Button, new() { Name = "Verify signature" }).ClickAsync();
        await Assertions.Expect(page.Locator("#receipt-verdict")).ToHaveTextAsync($"Valid signature by key {keyId}.");
        Assert.Contains("verify=receipt", page.Url, StringComparison.Ordinal);
        await BrowserFixture.ScreenshotAsync(page, "job-receipt");

        // A job without a receipt has no receipt section.
        var pending = await client.SubmitAsync(new { model = ApiClient.Unique(), model_match = "exact", prompt = "p" });
        await page.GotoAsync($"/jobs/{pending}");
        await Assertions.Expect(page.Locator("#job-status")).ToHaveTextAsync("pending");
        await Assertions.Expect(page.Locator("#receipt")).ToHaveCountAsync(0);
    }

    [Fact]
    public async Task TamperedReceipt_FailsVerification_WithTheReason()
    {
        var page = await fixture.NewPageAsync();
        var client = Host.WithKey(await SignUpAsync(page, "receipt-tamper"));
        var receipt = await TestReceipts.CompleteWithReceiptAsync(Host, client, await Host.NewAccountAsync("provider"));
        using var signed = JsonDocument.Parse(receipt.Body);
        await TestReceipts.TamperAsync(Host, receipt.ReceiptId, "\"price\":" + signed.RootElement.GetProperty("price").GetRawText(), "\"price\":9.99");

        await page.GotoAsync($"/jobs/{receipt.JobId}?verify=receipt");
        await Assertions.Expect(page.Locator("#receipt-fields [data-field='price']")).ToHaveTextAsync("9.99");
        await Assertions.Expect(page.Locator("#receipt-verdict")).ToHaveTextAsync("Invalid: signature mismatch: the receipt was changed after signing, or signed by another key");
        await BrowserFixture.ScreenshotAsync(page, "job-receipt-tampered");
    }

    private static async Task<string> SignUpAsync(IPage page, string name)
    {
        await page.GotoAsync("/signup");
        await page.GetByLabel("Account name").FillAsync(name);
        await page.GetByRole(AriaRole.Button, new() { Name = "Create account" }).ClickAsync();
        return await page.Locator("#new-key").InputValueAsync();
    }
}

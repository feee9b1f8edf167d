using System.Globalization;
using System.Net;
using System.Text;
using System.Text.Json;
using Coordinator.Api.Aitbc;
using Coordinator.Grains.Jobs;
using Coordinator.Grains.Webhooks;
using Coordinator.Tests.Infrastructure;

namespace Coordinator.Tests.Receipts;

/// <summary>
/// The AITBC API's receipt reads (<c>/v1/receipts</c>, <c>/v1/receipts/{id}</c>, <c>/v1/jobs/{id}/receipt(s)</c>) and
/// the Grid API's link from a job to its receipt, over real HTTP against real PostgreSQL.
/// </summary>
public sealed class ReceiptsReadTests(HostFixture fixture) : IClassFixture<HostFixture>
{
    private GridHost Host => fixture.Host;

    [Fact]
    public async Task Receipt_IsServedAsStoredByteForByte_ToItsClientAndItsProvidersOwner()
    {
        var client = await Host.NewAccountAsync("client");
        var provider = await Host.NewAccountAsync("provider");
        // A miner id with a non-ASCII letter: the stored body carries it escaped (\u00fc), as Python writes it, and a
        // re-serialised answer would not.
        var receipt = await TestReceipts.CompleteWithReceiptAsync(Host, client, provider, minerId: ApiClient.Unique("gpü-"));
        Assert.Contains("\\u00fc", receipt.Body, StringComparison.Ordinal);

        foreach (var reader in new[] { client, provider })
        {
            using var response = await GetAsync($"v1/receipts/{receipt.ReceiptId}", reader.Key);
            Assert.Equal(HttpStatusCode.OK, response.StatusCode);
            Assert.Equal("application/json", response.Content.Headers.ContentType?.MediaType);
            Assert.Equal(Encoding.UTF8.GetBytes(receipt.Body), await response.Content.ReadAsByteArrayAsync());
        }
    }

    [Fact]
    public async Task Receipt_OfAnotherAccount_OrUnknown_IsNotFound()
    {
        var receipt = await TestReceipts.CompleteWithReceiptAsync(Host, await Host.NewAccountAsync("client"), await Host.NewAccountAsync("provider"));
        var stranger = await Host.NewAccountAsync("stranger");

        await ExpectErrorAsync(await GetAsync($"v1/receipts/{receipt.ReceiptId}", stranger.Key), HttpStatusCode.NotFound, "not_found");
        await ExpectErrorAsync(await GetAsync("v1/receipts/rcpt_unknown", stranger.Key), HttpStatusCode.NotFound, "not_found");
        await ExpectErrorAsync(await GetAsync("v1/receipts/rcpt%ED%A0%80", stranger.Key), HttpStatusCode.NotFound, "not_found");
        await ExpectErrorAsync(await GetAsync($"v1/jobs/{receipt.JobId}/receipt", stranger.Key), HttpStatusCode.NotFound, "not_found");
        await ExpectErrorAsync(await GetAsync($"v1/jobs/{receipt.JobId}/receipts", stranger.Key), HttpStatusCode.NotFound, "not_found");
        Assert.Equal("[]", await ArrayTextAsync(await GetAsync("v1/receipts", stranger.Key)));
    }

    [Fact]
    public async Task Receipts_WithoutAValidKey_AreUnauthorized()
    {
        var receipt = await TestReceipts.CompleteWithReceiptAsync(Host, await Host.NewAccountAsync("client"), await Host.NewAccountAsync("provider"));
        string[] paths = ["v1/receipts", $"v1/receipts/{receipt.ReceiptId}", $"v1/jobs/{receipt.JobId}/receipt", $"v1/jobs/{receipt.JobId}/receipts"];
        foreach (var path in paths)
        {
            await ExpectErrorAsync(await GetAsync(path, key: null), HttpStatusCode.Unauthorized, "unauthorized");
            await ExpectErrorAsync(await GetAsync(path, "vk_live_not-a-key"), HttpStatusCode.Unauthorized, "unauthorized");
        }
    }

    [Fact]
    public async Task JobReceipt_IsTheJobsReceipt_AndJobReceipts_AreThatOneReceipt()
    {
        // A job completes once, so its history is its one receipt.
        var client = await Host.NewAccountAsync("client");
        var provider = await Host.NewAccountAsync("provider");
        var first = await TestReceipts.CompleteWithReceiptAsync(Host, client, provider);

        foreach (var reader in new[] { client, provider })
        {
            using var latest = await GetAsync($"v1/jobs/{first.JobId}/receipt", reader.Key);
            Assert.Equal(HttpStatusCode.OK, latest.StatusCode);
            Assert.Equal(first.Body, await latest.Content.ReadAsStringAsync());
            Assert.Equal($"[{first.Body}]", await ArrayTextAsync(await GetAsync($"v1/jobs/{first.JobId}/receipts", reader.Key)));
        }

        // A job of the caller's without a receipt: no latest one, an empty history. An id that is not a number is no job.
        var pending = await client.SubmitAsync(new { model = ApiClient.Unique(), model_match = "exact", prompt = "p" });
        await ExpectErrorAsync(await GetAsync($"v1/jobs/{pending}/receipt", client.Key), HttpStatusCode.NotFound, "not_found");
        Assert.Equal("[]", await ArrayTextAsync(await GetAsync($"v1/jobs/{pending}/receipts", client.Key)));
        await ExpectErrorAsync(await GetAsync("v1/jobs/abc/receipt", client.Key), HttpStatusCode.NotFound, "not_found");
        await ExpectErrorAsync(await GetAsync("v1/jobs/-1/receipts", client.Key), HttpStatusCode.NotFound, "not_found");
    }

    [Fact]
    public async Task List_ShowsReceiptsAsClientAndAsProvider_NewestFirst_FilteredByClientAndProvider()
    {
        var alice = await Host.NewAccountAsync("alice");
        var bob = await Host.NewAccountAsync("bob");
        var minerId = ApiClient.Unique("miner-");
        // Alice's jobs on Bob's miner, then Bob's job on a worker of Alice's.
        var first = await TestReceipts.CompleteWithReceiptAsync(Host, alice, bob, minerId);
        var second = await TestReceipts.CompleteWithReceiptAsync(Host, alice, bob);
        var third = await TestReceipts.CompleteWithReceiptAsync(Host, bob, alice);
        Assert.Equal(minerId, first.Provider);
        Assert.StartsWith("worker-", third.Provider, StringComparison.Ordinal);

        async Task<List<string>> IdsAsync(ApiClient reader, string query = "")
        {
            var text = await ArrayTextAsync(await GetAsync("v1/receipts" + query, reader.Key));
            return JsonDocument.Parse(text).RootElement.EnumerateArray().Select(r => r.GetProperty("receipt_id").GetString()!).ToList();
        }

        var aliceAll = await IdsAsync(alice);
        Assert.Equal([third.ReceiptId, second.ReceiptId, first.ReceiptId], aliceAll);
        Assert.Equal(aliceAll, await IdsAsync(bob));

        Assert.Equal(aliceAll[1..], await IdsAsync(alice, "?client=" + first.Client));
        Assert.Equal([third.ReceiptId], await IdsAsync(alice, "?provider=" + third.Provider));
        Assert.Equal([first.ReceiptId], await IdsAsync(bob, "?provider=" + Uri.EscapeDataString(minerId)));
        Assert.Equal([first.ReceiptId], await IdsAsync(bob, $"?client={first.Client}&provider={minerId}"));
        Assert.Empty(await IdsAsync(bob, $"?client={third.Client}&provider={minerId}"));
        Assert.Equal([third.ReceiptId], await IdsAsync(alice, "?limit=1"));
        Assert.Equal(aliceAll, await IdsAsync(alice, "?limit=100"));
    }

    [Theory]
    [InlineData("?limit=0")]
    [InlineData("?limit=101")]
    [InlineData("?limit=-1")]
    [InlineData("?limit=ten")]
    [InlineData("?limit=")]
    [InlineData("?client=")]
    [InlineData("?provider=%00")]
    [InlineData("?client=%ED%A0%80&limit=0")]
    public async Task List_RefusesBadParameters_WithTheSpecsErrorShape(string query)
    {
        var caller = await Host.NewAccountAsync("caller");
        var error = await ExpectErrorAsync(await GetAsync("v1/receipts" + query, caller.Key), HttpStatusCode.BadRequest, "invalid_request");
        Assert.False(string.IsNullOrWhiteSpace(error.GetProperty("detail").GetString()));
    }

    [Fact]
    public async Task GridJob_LinksToItsReceipt_OnTheAitbcPort()
    {
        var client = await Host.NewAccountAsync("client");
        var receipt = await TestReceipts.CompleteWithReceiptAsync(Host, client, await Host.NewAccountAsync("provider"));
        var expectedUrl = $"http://127.0.0.1:{Host.Aitbc.BaseAddress!.Port.ToString(CultureInfo.InvariantCulture)}/v1/receipts/{receipt.ReceiptId}";

        var job = await client.GetJobAsync(receipt.JobId);
        Assert.Equal(receipt.ReceiptId, job.GetProperty("receipt_id").GetString());
        Assert.Equal(expectedUrl, job.GetProperty("receipt_url").GetString());
        var listed = (await ApiClient.ExpectAsync(await client.GetAsync("jobs"), HttpStatusCode.OK)).EnumerateArray().Single(j => j.GetProperty("job_id").GetInt64() == receipt.JobId);
        Assert.Equal(expectedUrl, listed.GetProperty("receipt_url").GetString());

        // The link works as it is, with the client's key.
        using var request = new HttpRequestMessage(HttpMethod.Get, new Uri(expectedUrl));
        request.Headers.Add("X-Api-Key", client.Key);
        using var linked = await Host.Aitbc.SendAsync(request);
        Assert.Equal(receipt.Body, await linked.Content.ReadAsStringAsync());

        // A webhook body has no request to take a host from: without Aitbc:PublicBaseUrl it names the receipt only.
        var row = await Host.Get<JobStore>().GetAsync(receipt.ClientAccountId, receipt.JobId);
        using var webhook = JsonDocument.Parse(Host.Get<IJobRenderer>().Render(row!));
        Assert.Equal(receipt.ReceiptId, webhook.RootElement.GetProperty("receipt_id").GetString());
        Assert.False(webhook.RootElement.TryGetProperty("receipt_url", out _));

        // A job without a receipt has neither field.
        var pending = await client.GetJobAsync(await client.SubmitAsync(new { model = ApiClient.Unique(), model_match = "exact", prompt = "p" }));
        Assert.False(pending.TryGetProperty("receipt_id", out _));
        Assert.False(pending.TryGetProperty("receipt_url", out _));
    }

    [Theory]
    [InlineData("https://aitbc.example.com", "https://aitbc.example.com/v1/receipts/rcpt_1")]
    [InlineData("https://example.com/api/", "https://example.com/api/v1/receipts/rcpt_1")]
    public void ReceiptUrl_UsesThePublicBaseUrl_WithOrWithoutARequest(string publicBase, string expected)
    {
        var options = new AitbcOptions { PublicBaseUrl = new Uri(publicBase) };
        Assert.Equal(expected, ReceiptsApi.UrlOf("rcpt_1", options, request: null));
        var request = new Microsoft.AspNetCore.Http.DefaultHttpContext().Request;
        request.Host = new Microsoft.AspNetCore.Http.HostString("grid.internal", 3000);
        Assert.Equal(expected, ReceiptsApi.UrlOf("rcpt_1", options, request));
        Assert.Equal("http://grid.internal:8001/v1/receipts/rcpt_1", ReceiptsApi.UrlOf("rcpt_1", new AitbcOptions(), request));
        Assert.Null(ReceiptsApi.UrlOf("rcpt_1", new AitbcOptions { Port = 0 }, request));
    }

    private async Task<HttpResponseMessage> GetAsync(string path, string? key)
    {
        using var request = new HttpRequestMessage(HttpMethod.Get, path);
        if (key is not null) request.Headers.Add("X-Api-Key", key);
        return await Host.Aitbc.SendAsync(request);
    }

    private static async Task<string> ArrayTextAsync(HttpResponseMessage response)
    {
        using (response)
        {
            var text = await response.Content.ReadAsStringAsync();
            Assert.True(response.StatusCode == HttpStatusCode.OK, $"expected 200 but got {(int)response.StatusCode}: {text}");
            Assert.Equal("application/json", response.Content.Headers.ContentType?.MediaType);
            return text;
        }
    }

    private static async Task<JsonElement> ExpectErrorAsync(HttpResponseMessage response, HttpStatusCode status, string errorCode)
    {
        using (response)
        {
            var error = await ApiClient.ExpectAsync(response, status);
            Assert.Equal(errorCode, error.GetProperty("error_code").GetString());
            Assert.False(string.IsNullOrWhiteSpace(error.GetProperty("detail").GetString()));
            return error;
        }
    }
}

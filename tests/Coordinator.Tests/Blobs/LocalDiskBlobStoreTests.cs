using System.Net;
using System.Security.Cryptography;
using System.Text;
using Coordinator.Grains.Blobs;
using Coordinator.Tests.Infrastructure;
using Microsoft.Extensions.Options;

namespace Coordinator.Tests.Blobs;

/// <summary>The blob tests with the embedded local-disk store, whose signed URLs the coordinator serves itself.</summary>
public sealed class LocalDiskBlobStoreTests : BlobTests
{
    protected override Task<Dictionary<string, string?>> StoreSettingsAsync() => Task.FromResult(new Dictionary<string, string?>());

    private string LocalPath => Host.Get<IOptions<BlobOptions>>().Value.LocalPath;

    private static Uri With(Uri url, string name, string value)
    {
        var query = System.Web.HttpUtility.ParseQueryString(url.Query);
        query[name] = value;
        return new UriBuilder(url) { Query = query.ToString() }.Uri;
    }

    [Fact]
    public async Task URLs_PointAtThisCoordinator_AndAreSignedForOneMethodAndKey()
    {
        var client = await Host.NewAccountAsync();
        var (id, url) = await CreateBlobAsync(client);
        Assert.Equal(Host.BaseAddress.Authority, url.Authority);
        Assert.Matches("^/api/v1/blob-store/[0-9]+/[0-9a-f]{32}$", url.AbsolutePath);

        var signature = System.Web.HttpUtility.ParseQueryString(url.Query)["signature"]!;
        var flipped = (signature[0] == '0' ? "1" : "0") + signature[1..];
        var expires = long.Parse(System.Web.HttpUtility.ParseQueryString(url.Query)["expires"]!);
        var (_, otherUrl) = await CreateBlobAsync(client);
        foreach (var tampered in new[]
                 {
                     With(url, "signature", flipped),
                     With(url, "signature", "not-hex"),
                     With(url, "expires", (expires + 3600).ToString()),
                     new UriBuilder(url) { Path = otherUrl.AbsolutePath }.Uri, // this signature for another blob
                     new UriBuilder(url) { Query = "" }.Uri,
                 })
        {
            var response = await PutAsync(tampered, [1]);
            Assert.Equal(HttpStatusCode.Forbidden, response.StatusCode);
            Assert.Contains("invalid_signature", await response.Content.ReadAsStringAsync());
        }
        // An upload URL does not download, and nothing was written by the refused attempts.
        Assert.Equal(HttpStatusCode.Forbidden, (await Direct.GetAsync(url)).StatusCode);
        await ApiClient.ExpectAsync(await client.PostAsync($"blobs/{id}/confirm"), HttpStatusCode.UnprocessableEntity);

        Assert.True((await PutAsync(url, [5, 6])).IsSuccessStatusCode);
        await ApiClient.ExpectAsync(await client.PostAsync($"blobs/{id}/confirm"), HttpStatusCode.OK);
    }

    [Fact]
    public async Task ExpiredURLs_AreRefused_UploadAfter900Seconds_DownloadAfterTheJobsTimeout()
    {
        var client = await Host.NewAccountAsync();
        var (late, lateUrl) = await CreateBlobAsync(client);
        var id = await UploadedAndConfirmedAsync(client, [1, 2, 3]);
        var (assignment, _, _) = await SubmitAndClaimWithBlobsAsync(client, [id]); // timeout_seconds = 300
        var download = assignment.GetProperty("blobs")[0].GetProperty("url").GetString()!;

        Clock.Advance(TimeSpan.FromSeconds(299));
        Assert.Equal([1, 2, 3], await Direct.GetByteArrayAsync(download));
        Clock.Advance(TimeSpan.FromSeconds(1));
        var expired = await Direct.GetAsync(download);
        Assert.Equal(HttpStatusCode.Forbidden, expired.StatusCode);
        Assert.Contains("url_expired", await expired.Content.ReadAsStringAsync());

        Clock.Advance(TimeSpan.FromSeconds(600)); // 900 s after the upload URL was made
        var tooLate = await PutAsync(lateUrl, [1]);
        Assert.Equal(HttpStatusCode.Forbidden, tooLate.StatusCode);
        Assert.Contains("url_expired", await tooLate.Content.ReadAsStringAsync());
        await ApiClient.ExpectAsync(await client.PostAsync($"blobs/{late}/confirm"), HttpStatusCode.UnprocessableEntity);
    }

    [Fact]
    public async Task PathTraversal_IsRefused_EvenWithAValidSignature()
    {
        var secretName = "secret-" + Guid.NewGuid().ToString("N");
        var secretPath = Path.Combine(LocalPath, "..", secretName);
        Directory.CreateDirectory(LocalPath);
        await File.WriteAllTextAsync(secretPath, "top secret");
        try
        {
            var store = Host.Get<LocalDiskBlobStore>();
            var signingKey = await Host.Get<BlobSigningKey>().GetAsync();
            var expires = (Clock.GetUtcNow() + TimeSpan.FromHours(1)).ToUnixTimeSeconds().ToString();
            var hex = new string('a', 32);
            foreach (var key in new[] { "../" + secretName, $"1/../../{secretName}", $"1/{hex}/../../../{secretName}", "..\\" + secretName, "/etc/passwd", $"1/{hex}\n", "" })
            {
                foreach (var method in new[] { "GET", "PUT" })
                {
                    var signature = Convert.ToHexStringLower(HMACSHA256.HashData(signingKey, Encoding.UTF8.GetBytes($"{method}\n{key}\n{expires}")));
                    Assert.Equal(SignedRequestCheck.BadKey, await store.CheckAsync(method, key, expires, signature));
                }
                // Over HTTP, percent-encoded so that neither the client nor Kestrel folds the dot segments away.
                var url = new Uri(Host.BaseAddress, $"/api/v1/blob-store/{Uri.EscapeDataString(key)}?expires={expires}&signature=00");
                var response = await Direct.GetAsync(url);
                Assert.NotEqual(HttpStatusCode.OK, response.StatusCode);
                Assert.DoesNotContain("top secret", await response.Content.ReadAsStringAsync());
                Assert.NotEqual(HttpStatusCode.OK, (await PutAsync(url, "overwritten"u8.ToArray())).StatusCode);
            }
            Assert.Equal("top secret", await File.ReadAllTextAsync(secretPath));
        }
        finally
        {
            File.Delete(secretPath);
        }
    }

    [Fact]
    public async Task AnUploadOverTheLimit_IsRefusedWhileItStreams()
    {
        var client = await Host.NewAccountAsync();
        var (id, url) = await CreateBlobAsync(client);

        var declared = await PutAsync(url, new byte[MaxBytes + 1]);
        Assert.Equal(HttpStatusCode.RequestEntityTooLarge, declared.StatusCode);
        Assert.Contains("payload_too_large", await declared.Content.ReadAsStringAsync());

        // Without a Content-Length the store counts as it writes.
        using var chunked = new StreamContent(new MemoryStream(new byte[MaxBytes * 2]));
        using var request = new HttpRequestMessage(HttpMethod.Put, url) { Content = chunked };
        request.Headers.TransferEncodingChunked = true;
        HttpStatusCode status;
        try
        {
            status = (await Direct.SendAsync(request)).StatusCode;
        }
        catch (HttpRequestException)
        {
            status = HttpStatusCode.RequestEntityTooLarge; // the server may close the connection before the client finishes sending
        }
        Assert.Equal(HttpStatusCode.RequestEntityTooLarge, status);
        Assert.Empty(Directory.EnumerateFiles(LocalPath, "*", SearchOption.AllDirectories));
        await ApiClient.ExpectAsync(await client.PostAsync($"blobs/{id}/confirm"), HttpStatusCode.UnprocessableEntity);
    }

    [Fact]
    public async Task AURLSignedByOneNode_IsAcceptedByAnother()
    {
        await using var second = await GridHost.StartAsync(Host.ConnectionString, Clock, new Dictionary<string, string?> { ["Blobs:LocalPath"] = LocalPath });
        var client = await Host.NewAccountAsync();
        var (id, url) = await CreateBlobAsync(client);
        var onSecond = new UriBuilder(url) { Port = second.BaseAddress.Port }.Uri;
        Assert.True((await PutAsync(onSecond, [4, 2])).IsSuccessStatusCode);
        await ApiClient.ExpectAsync(await second.WithKey(client.Key).PostAsync($"blobs/{id}/confirm"), HttpStatusCode.OK);
    }

    [Fact]
    public async Task TheStoresLimit_AppliesToUploads_InsteadOfTheAPIsRequestBodyLimit()
    {
        // Default limits: 20 MiB attachments, 8 MiB API request bodies.
        await using var node = await GridHost.StartAsync(Host.ConnectionString);
        var client = await node.NewAccountAsync();
        var bytes = RandomNumberGenerator.GetBytes(9 * 1024 * 1024);
        var id = await UploadedAndConfirmedAsync(client, bytes);
        var (assignment, _, _) = await SubmitAndClaimWithBlobsAsync(client, [id]);
        Assert.Equal(bytes, await Direct.GetByteArrayAsync(assignment.GetProperty("blobs")[0].GetProperty("url").GetString()));
    }

    [Fact]
    public async Task AFileOverTheLimit_ThatReachedTheStoreAnyway_IsRefusedAtConfirmAndDeleted()
    {
        // E.g. written before Blobs:MaxBytes was lowered: confirm checks the size whatever the store.
        var client = await Host.NewAccountAsync();
        var (id, _) = await CreateBlobAsync(client);
        var path = Path.Combine(LocalPath, await ObjectKeyAsync(id));
        Directory.CreateDirectory(Path.GetDirectoryName(path)!);
        await File.WriteAllBytesAsync(path, new byte[MaxBytes + 1]);

        var refused = await ApiClient.ExpectAsync(await client.PostAsync($"blobs/{id}/confirm"), HttpStatusCode.UnprocessableEntity);
        Assert.Equal("too_large", refused.GetProperty("error").GetString());
        Assert.False(File.Exists(path));
    }

    [Fact]
    public async Task AnAccount_MayHoldOnlySoManyUnconfirmedBlobs()
    {
        await using var node = await GridHost.StartAsync(Host.ConnectionString, settings: new Dictionary<string, string?> { ["Blobs:MaxPendingPerAccount"] = "2" });
        var client = await node.NewAccountAsync();
        var (first, firstUrl) = await CreateBlobAsync(client);
        await CreateBlobAsync(client);
        var refused = await ApiClient.ExpectAsync(await client.PostAsync("blobs", new { blob_type = "image" }), HttpStatusCode.UnprocessableEntity);
        Assert.Contains("unconfirmed", refused.GetProperty("message").GetString());
        await CreateBlobAsync(await node.NewAccountAsync()); // another account is not affected

        Assert.True((await PutAsync(firstUrl, [1])).IsSuccessStatusCode);
        await ApiClient.ExpectAsync(await client.PostAsync($"blobs/{first}/confirm"), HttpStatusCode.OK);
        await CreateBlobAsync(client);
    }

    [Fact]
    public async Task ConcurrentConfirms_AllSucceed_AndTwoNodesSweepEachAbandonedBlobOnce()
    {
        await using var second = await GridHost.StartAsync(Host.ConnectionString, Clock, new Dictionary<string, string?> { ["Blobs:LocalPath"] = LocalPath });
        var client = await Host.NewAccountAsync();
        var (id, url) = await CreateBlobAsync(client);
        Assert.True((await PutAsync(url, [1])).IsSuccessStatusCode);
        var confirms = await Task.WhenAll(Enumerable.Range(0, 8).Select(_ => client.PostAsync($"blobs/{id}/confirm")));
        Assert.All(confirms, response => Assert.Equal(HttpStatusCode.OK, response.StatusCode));

        var abandoned = new List<string>();
        for (var i = 0; i < 5; i++)
        {
            var (blob, blobUrl) = await CreateBlobAsync(client);
            Assert.True((await PutAsync(blobUrl, [2])).IsSuccessStatusCode);
            abandoned.Add(await ObjectKeyAsync(blob));
        }
        Clock.Advance(TimeSpan.FromDays(1) + TimeSpan.FromSeconds(1));
        var removed = await Task.WhenAll(Host.Get<BlobSweeper>().RunOnceAsync(), second.Get<BlobSweeper>().RunOnceAsync());
        Assert.Equal(5, removed.Sum());
        Assert.All(abandoned, key => Assert.False(File.Exists(Path.Combine(LocalPath, key))));
        await ApiClient.ExpectAsync(await client.PostAsync($"blobs/{id}/confirm"), HttpStatusCode.OK);
    }
}

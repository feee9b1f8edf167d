using System.Net;
using Coordinator.Tests.Infrastructure;

namespace Coordinator.Tests.Blobs;

/// <summary>The blob tests with the S3 store (AWSSDK.S3) against a real S3-compatible server, s3rver.</summary>
public sealed class S3BlobStoreTests : BlobTests
{
    private S3rverProcess _s3 = null!;

    protected override async Task<Dictionary<string, string?>> StoreSettingsAsync()
    {
        _s3 = await S3rverProcess.StartAsync();
        return _s3.Settings;
    }

    public override async Task DisposeAsync()
    {
        await base.DisposeAsync();
        await _s3.DisposeAsync();
    }

    [Fact]
    public async Task URLs_ArePresignedForTheBucket_AndAnUploadOverTheLimitIsRefusedAtConfirm()
    {
        var client = await Host.NewAccountAsync();
        var (id, url) = await CreateBlobAsync(client);
        Assert.Equal(_s3.ServiceUrl.Authority, url.Authority);
        Assert.StartsWith($"/{S3rverProcess.Bucket}/", url.AbsolutePath);
        Assert.Contains("X-Amz-Signature=", url.Query);

        // S3 cannot cap a presigned PUT; confirm checks the size and discards what is too large.
        Assert.True((await PutAsync(url, new byte[MaxBytes + 1])).IsSuccessStatusCode);
        var refused = await ApiClient.ExpectAsync(await client.PostAsync($"blobs/{id}/confirm"), HttpStatusCode.UnprocessableEntity);
        Assert.Equal("too_large", refused.GetProperty("error").GetString());
        Assert.Contains(MaxBytes.ToString(), refused.GetProperty("message").GetString());
        var afterwards = await ApiClient.ExpectAsync(await client.PostAsync($"blobs/{id}/confirm"), HttpStatusCode.UnprocessableEntity);
        Assert.Equal("upload_missing", afterwards.GetProperty("error").GetString());
    }

    [Fact]
    public async Task TheWorkersDownloadURL_IsAPresignedGetValidForTheJobsTimeout()
    {
        // s3rver does not check signatures, so tampering is tested on the local-disk store; here the URL's terms are.
        var client = await Host.NewAccountAsync();
        var id = await UploadedAndConfirmedAsync(client, [8, 8]);
        var (assignment, _, _) = await SubmitAndClaimWithBlobsAsync(client, [id]); // timeout_seconds = 300
        var url = new Uri(assignment.GetProperty("blobs")[0].GetProperty("url").GetString()!);
        var query = System.Web.HttpUtility.ParseQueryString(url.Query);
        Assert.Equal("300", query["X-Amz-Expires"]);
        Assert.Equal("host", query["X-Amz-SignedHeaders"]);
        Assert.StartsWith("S3RVER/", query["X-Amz-Credential"]);
        Assert.Equal(HttpStatusCode.OK, (await Direct.GetAsync(url)).StatusCode);
        Assert.Equal(HttpStatusCode.NotFound, (await Direct.GetAsync(new UriBuilder(url) { Path = url.AbsolutePath + "x" }.Uri)).StatusCode);
    }

    [Fact]
    public async Task AConfirm_WhileTheStoreIsDown_Is503()
    {
        var client = await Host.NewAccountAsync();
        var (id, url) = await CreateBlobAsync(client);
        Assert.True((await PutAsync(url, [1])).IsSuccessStatusCode);
        await _s3.DisposeAsync();

        var down = await ApiClient.ExpectAsync(await client.PostAsync($"blobs/{id}/confirm"), HttpStatusCode.ServiceUnavailable);
        Assert.Equal("service_unavailable", down.GetProperty("error").GetString());
    }
}

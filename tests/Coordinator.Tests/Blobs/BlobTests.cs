using System.Net;
using System.Security.Cryptography;
using System.Text.Json;
using Coordinator.Grains.Blobs;
using Coordinator.Tests.Infrastructure;

namespace Coordinator.Tests.Blobs;

/// <summary>
/// The blob round trip (create, PUT to the presigned URL, confirm, attach to a job, download by the worker) and the
/// rules around it, against each store: a subclass says which one the node uses.
/// </summary>
public abstract class BlobTests : IAsyncLifetime
{
    protected const int MaxBytes = 64 * 1024;

    protected ManualTimeProvider Clock { get; } = new();
    protected GridHost Host { get; private set; } = null!;

    /// <summary>The store settings of this class's node (Blobs:Store and the like).</summary>
    protected abstract Task<Dictionary<string, string?>> StoreSettingsAsync();

    public virtual async Task InitializeAsync()
    {
        var settings = await StoreSettingsAsync();
        settings["Blobs:MaxBytes"] = MaxBytes.ToString();
        Host = await GridHost.StartAsync(time: Clock, settings: settings);
    }

    public virtual async Task DisposeAsync() => await Host.DisposeAsync();

    /// <summary>A plain HTTP client, as a browser or worker that holds only the presigned URL would use.</summary>
    protected static readonly HttpClient Direct = new() { Timeout = TimeSpan.FromSeconds(60) };

    protected static async Task<(long Id, Uri UploadUrl)> CreateBlobAsync(ApiClient client, string type = "image")
    {
        var created = await ApiClient.ExpectAsync(await client.PostAsync("blobs", new { blob_type = type }), HttpStatusCode.Created);
        Assert.Equal(900, created.GetProperty("expires_in").GetInt32());
        return (created.GetProperty("blob_id").GetInt64(), new Uri(created.GetProperty("upload_url").GetString()!));
    }

    protected static async Task<HttpResponseMessage> PutAsync(Uri url, byte[] bytes)
    {
        using var content = new ByteArrayContent(bytes);
        content.Headers.ContentType = new System.Net.Http.Headers.MediaTypeHeaderValue("image/png");
        return await Direct.PutAsync(url, content);
    }

    protected static async Task<long> UploadedAndConfirmedAsync(ApiClient client, byte[] bytes, string type = "image")
    {
        var (id, url) = await CreateBlobAsync(client, type);
        Assert.True((await PutAsync(url, bytes)).IsSuccessStatusCode);
        var confirmed = await ApiClient.ExpectAsync(await client.PostAsync($"blobs/{id}/confirm"), HttpStatusCode.OK);
        Assert.Equal("confirmed", confirmed.GetProperty("status").GetString());
        return id;
    }

    [Fact]
    public async Task AnAttachment_UploadedAndConfirmed_IsDownloadedByTheWorkerThatClaimsTheJob()
    {
        var client = await Host.NewAccountAsync();
        var image = RandomNumberGenerator.GetBytes(MaxBytes); // exactly at the limit
        var document = "%PDF-1.4 a small document"u8.ToArray();
        var imageId = await UploadedAndConfirmedAsync(client, image);
        var documentId = await UploadedAndConfirmedAsync(client, document, "document");

        var (worker, jobId, _) = await SubmitAndClaimWithBlobsAsync(client, [documentId, imageId]);
        var blobs = worker.GetProperty("blobs").EnumerateArray().ToList();
        Assert.Equal(2, blobs.Count);
        Assert.Equal([documentId, imageId], blobs.Select(b => b.GetProperty("id").GetInt64()));
        Assert.Equal(["document", "image"], blobs.Select(b => b.GetProperty("type").GetString()));
        Assert.Equal(document, await Direct.GetByteArrayAsync(blobs[0].GetProperty("url").GetString()));
        Assert.Equal(image, await Direct.GetByteArrayAsync(blobs[1].GetProperty("url").GetString()));
        Assert.Equal(jobId, worker.GetProperty("job_id").GetInt64());
    }

    /// <summary>Submits a job with blob_ids and has a fresh worker claim it; answers the assignment.</summary>
    protected static async Task<(JsonElement Assignment, long JobId, ApiClient Worker)> SubmitAndClaimWithBlobsAsync(ApiClient client, long[] blobIds)
    {
        var model = ApiClient.Unique();
        var jobId = await client.SubmitAsync(new { model, model_match = "exact", prompt = "Describe the attachment.", blob_ids = blobIds, timeout_seconds = 300 });
        var (worker, _) = await client.NewWorkerAsync("w-" + model, model);
        var assignment = await worker.PollAsync($"models[]={model}");
        Assert.Equal(jobId, assignment!.Value.GetProperty("job_id").GetInt64());
        return (assignment.Value, jobId, worker);
    }

    [Fact]
    public async Task Confirm_WithoutAnUpload_Is422_AndAnotherAccountsBlob_Is404()
    {
        var client = await Host.NewAccountAsync();
        var stranger = await Host.NewAccountAsync();
        var (id, url) = await CreateBlobAsync(client);

        var missing = await ApiClient.ExpectAsync(await client.PostAsync($"blobs/{id}/confirm"), HttpStatusCode.UnprocessableEntity);
        Assert.Equal("upload_missing", missing.GetProperty("error").GetString());
        Assert.True((await PutAsync(url, [1, 2, 3])).IsSuccessStatusCode);
        var foreign = await ApiClient.ExpectAsync(await stranger.PostAsync($"blobs/{id}/confirm"), HttpStatusCode.NotFound);
        Assert.Equal("not_found", foreign.GetProperty("error").GetString());
        await ApiClient.ExpectAsync(await client.PostAsync("blobs/999999999/confirm"), HttpStatusCode.NotFound);

        await ApiClient.ExpectAsync(await client.PostAsync($"blobs/{id}/confirm"), HttpStatusCode.OK);
        await ApiClient.ExpectAsync(await client.PostAsync($"blobs/{id}/confirm"), HttpStatusCode.OK); // confirming twice is fine
    }

    [Fact]
    public async Task AJob_NamingABlobThatIsForeignUnconfirmedOrUnknown_Is422_AndNotCreated()
    {
        var client = await Host.NewAccountAsync();
        var stranger = await Host.NewAccountAsync();
        var foreign = await UploadedAndConfirmedAsync(stranger, [9]);
        var (unconfirmed, _) = await CreateBlobAsync(client);
        var mine = await UploadedAndConfirmedAsync(client, [7]);

        foreach (var ids in new[] { new[] { mine, foreign }, [unconfirmed], [999999999L] })
        {
            var refused = await ApiClient.ExpectAsync(await client.PostAsync("jobs", new { prompt = "p", blob_ids = ids }), HttpStatusCode.UnprocessableEntity);
            var error = Assert.Single(refused.GetProperty("errors").EnumerateArray()).GetString()!;
            Assert.Contains(ids.Last().ToString(), error);
            Assert.DoesNotContain(mine.ToString(), error);
        }
        var malformed = await ApiClient.ExpectAsync(await client.PostAsync("jobs", new { prompt = "p", blob_ids = new object[] { "one" } }), HttpStatusCode.UnprocessableEntity);
        Assert.Contains("blob_ids", malformed.GetProperty("errors")[0].GetString());
        Assert.Empty((await ApiClient.ExpectAsync(await client.GetAsync("jobs"), HttpStatusCode.OK)).EnumerateArray());
    }

    [Fact]
    public async Task CreatingABlob_RefusesAnUnknownType_AndDefaultsToImage()
    {
        var client = await Host.NewAccountAsync();
        var refused = await ApiClient.ExpectAsync(await client.PostAsync("blobs", new { blob_type = "video" }), HttpStatusCode.UnprocessableEntity);
        Assert.Contains("blob_type", refused.GetProperty("message").GetString());
        await ApiClient.ExpectAsync(await Host.Anonymous().PostAsync("blobs", new { blob_type = "image" }), HttpStatusCode.Unauthorized);

        var created = await ApiClient.ExpectAsync(await client.PostAsync("blobs"), HttpStatusCode.Created);
        var id = created.GetProperty("blob_id").GetInt64();
        Assert.True((await PutAsync(new Uri(created.GetProperty("upload_url").GetString()!), [1])).IsSuccessStatusCode);
        await ApiClient.ExpectAsync(await client.PostAsync($"blobs/{id}/confirm"), HttpStatusCode.OK);
        var (assignment, _, _) = await SubmitAndClaimWithBlobsAsync(client, [id]);
        Assert.Equal("image", assignment.GetProperty("blobs")[0].GetProperty("type").GetString());
    }

    [Fact]
    public async Task UnconfirmedBlobs_AreRemovedWithTheirObjectsAfterADay_ConfirmedOnesStay()
    {
        var client = await Host.NewAccountAsync();
        var (abandoned, abandonedUrl) = await CreateBlobAsync(client);
        Assert.True((await PutAsync(abandonedUrl, [1, 2])).IsSuccessStatusCode);
        var kept = await UploadedAndConfirmedAsync(client, [3, 4]);
        var abandonedKey = await ObjectKeyAsync(abandoned);
        var store = Host.Get<IBlobStore>();
        Assert.Equal(2, await store.SizeAsync(abandonedKey));
        var sweeper = Host.Get<BlobSweeper>();

        Clock.Advance(TimeSpan.FromHours(23));
        Assert.Equal(0, await sweeper.RunOnceAsync());
        Clock.Advance(TimeSpan.FromHours(1) + TimeSpan.FromSeconds(1));
        Assert.True(await sweeper.RunOnceAsync() >= 1);
        Assert.Null(await store.SizeAsync(abandonedKey));

        await ApiClient.ExpectAsync(await client.PostAsync($"blobs/{abandoned}/confirm"), HttpStatusCode.NotFound);
        await ApiClient.ExpectAsync(await client.PostAsync($"blobs/{kept}/confirm"), HttpStatusCode.OK);
        var (assignment, _, _) = await SubmitAndClaimWithBlobsAsync(client, [kept]);
        Assert.Equal([3, 4], await Direct.GetByteArrayAsync(assignment.GetProperty("blobs")[0].GetProperty("url").GetString()));
    }

    /// <summary>A blob's object key, read from the database (it is never shown by the API).</summary>
    protected async Task<string> ObjectKeyAsync(long blobId)
    {
        await using var connection = new Npgsql.NpgsqlConnection(Host.ConnectionString);
        await connection.OpenAsync();
        await using var command = new Npgsql.NpgsqlCommand("SELECT object_key FROM blobs WHERE id = @id", connection);
        command.Parameters.AddWithValue("id", blobId);
        return (string)(await command.ExecuteScalarAsync())!;
    }
}

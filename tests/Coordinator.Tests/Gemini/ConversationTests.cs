using System.Net;
using System.Text.Json;
using Coordinator.Tests.Infrastructure;
using Dapper;

namespace Coordinator.Tests.Gemini;

/// <summary>Conversations CRUD under <c>/api/gemini</c>: the spec's shapes, the caller's account only, and clear 400s and 401s.</summary>
public class ConversationTests(HostFixture fixture) : IClassFixture<HostFixture>
{
    private GridHost Host => fixture.Host;

    [Fact]
    public async Task Conversations_AreCreatedListedReadAndDeleted_InTheSpecsShapes_AndOnlyTheirAccountSeesThem()
    {
        var alice = Gemini.Client(Host, (await Host.NewAccountAsync()).Key);
        var bob = Gemini.Client(Host, (await Host.NewAccountAsync()).Key);

        var created = await ApiClient.ExpectAsync(await alice.PostAsync("conversations", new { title = "Trip to Lisbon" }), HttpStatusCode.Created);
        Assert.Equal(["id", "title", "createdAt"], created.EnumerateObject().Select(p => p.Name));
        var id = created.GetProperty("id").GetInt64();
        Assert.Equal("Trip to Lisbon", created.GetProperty("title").GetString());
        var createdAt = DateTimeOffset.Parse(created.GetProperty("createdAt").GetString()!, System.Globalization.CultureInfo.InvariantCulture);
        Assert.True(Math.Abs((DateTimeOffset.UtcNow - createdAt).TotalMinutes) < 5, "createdAt is the creation time, in ISO 8601");
        var second = await Gemini.NewConversationAsync(alice, "Second");
        var bobs = await Gemini.NewConversationAsync(bob, "Bob's");

        // The list: the caller's own, newest first.
        var listed = await ApiClient.ExpectAsync(await alice.GetAsync("conversations"), HttpStatusCode.OK);
        Assert.Equal([second, id], listed.EnumerateArray().Select(c => c.GetProperty("id").GetInt64()));
        Assert.Equal([bobs], (await ApiClient.ExpectAsync(await bob.GetAsync("conversations"), HttpStatusCode.OK)).EnumerateArray().Select(c => c.GetProperty("id").GetInt64()));

        var read = await ApiClient.ExpectAsync(await alice.GetAsync($"conversations/{id}"), HttpStatusCode.OK);
        Assert.Equal(["id", "title", "createdAt", "messages"], read.EnumerateObject().Select(p => p.Name));
        Assert.Empty(read.GetProperty("messages").EnumerateArray());
        Assert.Empty((await Gemini.MessagesAsync(alice, id)).EnumerateArray());

        // Another account's conversation does not exist for the caller: every path answers 404, and nothing changes.
        await Gemini.ErrorAsync(await bob.GetAsync($"conversations/{id}"), HttpStatusCode.NotFound);
        await Gemini.ErrorAsync(await bob.GetAsync($"conversations/{id}/messages"), HttpStatusCode.NotFound);
        await Gemini.ErrorAsync(await bob.DeleteAsync($"conversations/{id}"), HttpStatusCode.NotFound);
        await Gemini.ErrorAsync(await bob.PostAsync($"conversations/{id}/messages", new { content = "hi" }), HttpStatusCode.NotFound);
        await Gemini.ErrorAsync(await alice.GetAsync("conversations/999999999"), HttpStatusCode.NotFound);
        await ApiClient.ExpectAsync(await alice.GetAsync($"conversations/{id}"), HttpStatusCode.OK);

        // Delete removes the conversation and its messages.
        await using (var connection = await Host.OpenConnectionAsync())
        {
            await connection.ExecuteAsync("INSERT INTO gemini_messages (conversation_id, role, content) VALUES (@id, 'user', 'hello')", new { id });
        }
        Assert.Equal("hello", (await Gemini.MessagesAsync(alice, id))[0].GetProperty("content").GetString());
        Assert.Equal(HttpStatusCode.NoContent, (await alice.DeleteAsync($"conversations/{id}")).StatusCode);
        await Gemini.ErrorAsync(await alice.GetAsync($"conversations/{id}"), HttpStatusCode.NotFound);
        await Gemini.ErrorAsync(await alice.DeleteAsync($"conversations/{id}"), HttpStatusCode.NotFound);
        await using (var connection = await Host.OpenConnectionAsync())
        {
            Assert.Equal(0, await connection.ExecuteScalarAsync<long>("SELECT count(*) FROM gemini_messages WHERE conversation_id = @id", new { id }));
        }
        Assert.Equal([second], (await ApiClient.ExpectAsync(await alice.GetAsync("conversations"), HttpStatusCode.OK)).EnumerateArray().Select(c => c.GetProperty("id").GetInt64()));
    }

    [Fact]
    public async Task EveryPath_NeedsAGridKey_AndAMissingOrWrongOneIs401()
    {
        var anonymous = Gemini.Client(Host, null);
        var wrong = Gemini.Client(Host, "vk_live_not-a-key");
        foreach (var client in new[] { anonymous, wrong })
        {
            await Gemini.ErrorAsync(await client.GetAsync("conversations"), HttpStatusCode.Unauthorized);
            await Gemini.ErrorAsync(await client.PostAsync("conversations", new { title = "t" }), HttpStatusCode.Unauthorized);
            await Gemini.ErrorAsync(await client.GetAsync("conversations/1"), HttpStatusCode.Unauthorized);
            await Gemini.ErrorAsync(await client.DeleteAsync("conversations/1"), HttpStatusCode.Unauthorized);
            await Gemini.ErrorAsync(await client.GetAsync("conversations/1/messages"), HttpStatusCode.Unauthorized);
            await Gemini.ErrorAsync(await client.PostAsync("conversations/1/messages", new { content = "c" }), HttpStatusCode.Unauthorized);
            await Gemini.ErrorAsync(await client.PostAsync("generate-image", new { prompt = "p" }), HttpStatusCode.Unauthorized);
        }
    }

    [Theory]
    [InlineData("conversations", "not json", "not valid JSON")]
    [InlineData("conversations", "[]", "JSON object")]
    [InlineData("conversations", "{}", "title is required")]
    [InlineData("conversations", """{"title": 42}""", "title must be a string")]
    [InlineData("conversations", """{"title": "   "}""", "title is required")]
    [InlineData("MESSAGES", "{}", "content is required")]
    [InlineData("MESSAGES", """{"content": ["hi"]}""", "content must be a string")]
    [InlineData("MESSAGES", """{"content": "hi", "model": 7}""", "model must be a string")]
    [InlineData("MESSAGES", """{"content": "hi", "model": "no spaces please"}""", "not a valid model name")]
    [InlineData("generate-image", "{}", "prompt is required")]
    [InlineData("generate-image", """{"prompt": false}""", "prompt must be a string")]
    [InlineData("generate-image", "", "not valid JSON")]
    public async Task BadBodies_Are400_SayingWhatIsWrong(string path, string body, string expected)
    {
        var client = Gemini.Client(Host, (await Host.NewAccountAsync()).Key);
        if (path == "MESSAGES") path = $"conversations/{await Gemini.NewConversationAsync(client)}/messages";
        var message = await Gemini.ErrorAsync(await client.SendRawAsync(HttpMethod.Post, path, body), HttpStatusCode.BadRequest);
        Assert.Contains(expected, message, StringComparison.Ordinal);
    }

    [Theory]
    [InlineData("text/plain")]
    [InlineData("multipart/form-data; boundary=x")]
    [InlineData(null)]
    public async Task BodiesNotSentAsJson_Are400_AndStoreNothing(string? contentType)
    {
        var key = (await Host.NewAccountAsync()).Key;
        var client = Gemini.Client(Host, key);
        var id = await Gemini.NewConversationAsync(client);
        foreach (var (path, body) in new[] { ("conversations", """{"title": "t"}"""), ($"conversations/{id}/messages", """{"content": "hi"}"""), ("generate-image", """{"prompt": "a cat"}""") })
        {
            using var request = new HttpRequestMessage(HttpMethod.Post, path) { Content = new ByteArrayContent(System.Text.Encoding.UTF8.GetBytes(body)) };
            if (contentType is not null) request.Content.Headers.ContentType = System.Net.Http.Headers.MediaTypeHeaderValue.Parse(contentType);
            request.Headers.Authorization = new System.Net.Http.Headers.AuthenticationHeaderValue("Bearer", key);
            Assert.Contains("Content-Type: application/json", await Gemini.ErrorAsync(await client.Http.SendAsync(request), HttpStatusCode.BadRequest), StringComparison.Ordinal);
        }
        Assert.Equal([id], (await ApiClient.ExpectAsync(await client.GetAsync("conversations"), HttpStatusCode.OK)).EnumerateArray().Select(c => c.GetProperty("id").GetInt64()));
        Assert.Empty((await Gemini.MessagesAsync(client, id)).EnumerateArray());
    }

    [Fact]
    public async Task TitlesAndContents_PastTheirLimits_Are400()
    {
        var client = Gemini.Client(Host, (await Host.NewAccountAsync()).Key);
        var message = await Gemini.ErrorAsync(await client.PostAsync("conversations", new { title = new string('t', 501) }), HttpStatusCode.BadRequest);
        Assert.Contains("at most 500 characters", message, StringComparison.Ordinal);
        var id = await Gemini.NewConversationAsync(client);
        // The grid's prompt limit (Jobs:MaxPromptBytes, 1 MiB by default).
        message = await Gemini.ErrorAsync(await client.PostAsync($"conversations/{id}/messages", new { content = new string('c', 1024 * 1024 + 1) }), HttpStatusCode.BadRequest);
        Assert.Contains("larger than the limit", message, StringComparison.Ordinal);
        Assert.Empty((await Gemini.MessagesAsync(client, id)).EnumerateArray());
    }
}

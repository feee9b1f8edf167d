using System.Net;
using System.Text.Json;
using Coordinator.Tests.Infrastructure;

namespace Coordinator.Tests.Gemini;

/// <summary>
/// <c>POST /api/gemini/conversations/{id}/messages</c>: the history goes to a worker as a grid chat job, its chunks come
/// back as SSE events as the worker sends them, and the reply is stored, whether or not the client stayed.
/// </summary>
public class MessageStreamTests(HostFixture fixture) : IClassFixture<HostFixture>
{
    private GridHost Host => fixture.Host;

    [Fact]
    public async Task AReply_StreamsChunkByChunk_AsTheWorkerSendsThem_ThenIsStored_AndTheHistoryGoesInOrder()
    {
        var grid = await Host.NewAccountAsync();
        var client = Gemini.Client(Host, grid.Key);
        var model = ApiClient.Unique() + ":8b";
        var (worker, _) = await grid.NewWorkerAsync("w", model);
        var id = await Gemini.NewConversationAsync(client);

        await using (var stream = await Gemini.SendAsync(client, id, new { content = "Hello there", model }))
        {
            var assignment = await Gemini.TakeAsync(worker, model);
            var jobId = assignment.GetProperty("job_id").GetInt64();
            Assert.Equal(jobId.ToString(System.Globalization.CultureInfo.InvariantCulture), stream.Response.Headers.GetValues("X-Grid-Job-Id").Single());
            Assert.Equal("""[{"role":"user","content":"Hello there"}]""", assignment.GetProperty("params").GetProperty("messages").GetRawText());
            Assert.Equal("exact", assignment.GetProperty("model_match").GetString());
            // The user's message is stored before the reply comes.
            Assert.Equal(["user"], (await Gemini.MessagesAsync(client, id)).EnumerateArray().Select(m => m.GetProperty("role").GetString()));

            foreach (var (text, index) in new[] { "Hi", ", wörld", " 🌍" }.Select((t, i) => (t, i)))
            {
                await OpenAi.OpenAi.ChunkAsync(worker, jobId, index, text);
                Assert.Equal(text, (await Gemini.NextAsync(stream)).GetProperty("content").GetString());
            }
            // The result says more than the chunks did: the rest comes before the end.
            await Gemini.ResultAsync(worker, jobId, "Hi, wörld 🌍!");
            Assert.Equal("!", (await Gemini.NextAsync(stream)).GetProperty("content").GetString());
            var done = await Gemini.NextAsync(stream);
            Assert.True(done.GetProperty("done").GetBoolean());
            Assert.Null(await stream.NextAsync());

            var messages = (await Gemini.MessagesAsync(client, id)).EnumerateArray().ToList();
            Assert.Equal([("user", "Hello there"), ("assistant", "Hi, wörld 🌍!")], messages.Select(m => (m.GetProperty("role").GetString(), m.GetProperty("content").GetString())));
            Assert.Equal(done.GetProperty("messageId").GetInt64(), messages[1].GetProperty("id").GetInt64());
            Assert.All(messages, m => Assert.Equal(id, m.GetProperty("conversationId").GetInt64()));
            Assert.Equal(["id", "conversationId", "role", "content", "createdAt"], messages[0].EnumerateObject().Select(p => p.Name));
        }

        // The next message carries the whole history, oldest first.
        await using (var stream = await Gemini.SendAsync(client, id, new { content = "And again?", model }))
        {
            var assignment = await Gemini.TakeAsync(worker, model);
            var sent = assignment.GetProperty("params").GetProperty("messages").EnumerateArray()
                .Select(m => (m.GetProperty("role").GetString(), m.GetProperty("content").GetString())).ToList();
            Assert.Equal([("user", "Hello there"), ("assistant", "Hi, wörld 🌍!"), ("user", "And again?")], sent);
            await Gemini.ResultAsync(worker, assignment.GetProperty("job_id").GetInt64(), "Again.");
            Assert.Equal("Again.", (await Gemini.NextAsync(stream)).GetProperty("content").GetString());
            Assert.True((await Gemini.NextAsync(stream)).GetProperty("done").GetBoolean());
        }
        var read = await ApiClient.ExpectAsync(await client.GetAsync($"conversations/{id}"), HttpStatusCode.OK);
        Assert.Equal(["Hello there", "Hi, wörld 🌍!", "And again?", "Again."], read.GetProperty("messages").EnumerateArray().Select(m => m.GetProperty("content").GetString()));
    }

    [Fact]
    public async Task AClientThatLeavesMidStream_StillGetsTheReplyStored_AndTheJobIsNotCancelled()
    {
        var grid = await Host.NewAccountAsync();
        var client = Gemini.Client(Host, grid.Key);
        var model = ApiClient.Unique() + ":8b";
        var (worker, _) = await grid.NewWorkerAsync("w", model);
        var id = await Gemini.NewConversationAsync(client);

        var stream = await Gemini.SendAsync(client, id, new { content = "Tell me a story", model });
        var jobId = (await Gemini.TakeAsync(worker, model)).GetProperty("job_id").GetInt64();
        await OpenAi.OpenAi.ChunkAsync(worker, jobId, 0, "Once");
        Assert.Equal("Once", (await Gemini.NextAsync(stream)).GetProperty("content").GetString());
        await stream.DisposeAsync();

        // The worker goes on: its chunks and result are still accepted (a cancelled job would answer 422).
        await OpenAi.OpenAi.ChunkAsync(worker, jobId, 1, " upon a time");
        await Gemini.ResultAsync(worker, jobId, "Once upon a time.");
        await Eventually.TrueAsync(async () => (await Gemini.MessagesAsync(client, id)).GetArrayLength() == 2, "the reply is stored");
        var reply = (await Gemini.MessagesAsync(client, id))[1];
        Assert.Equal(("assistant", "Once upon a time."), (reply.GetProperty("role").GetString(), reply.GetProperty("content").GetString()));
        Assert.Equal("completed", (await grid.GetJobAsync(jobId)).GetProperty("status").GetString());
    }

    [Fact]
    public async Task AJobThatFails_EndsTheStreamWithAnErrorEvent_AndStoresNoReply()
    {
        var grid = await Host.NewAccountAsync();
        var client = Gemini.Client(Host, grid.Key);
        var model = ApiClient.Unique() + ":8b";
        var (worker, _) = await grid.NewWorkerAsync("w", model);
        var id = await Gemini.NewConversationAsync(client);

        await using var stream = await Gemini.SendAsync(client, id, new { content = "Hi", model });
        var jobId = (await Gemini.TakeAsync(worker, model)).GetProperty("job_id").GetInt64();
        await ApiClient.ExpectAsync(await worker.PostAsync($"worker/jobs/{jobId}/fail", new { error = "backend crashed" }), HttpStatusCode.OK);
        var error = await Gemini.NextAsync(stream);
        Assert.Contains("backend crashed", error.GetProperty("error").GetString(), StringComparison.Ordinal);
        Assert.Null(await stream.NextAsync());
        Assert.Equal(["user"], (await Gemini.MessagesAsync(client, id)).EnumerateArray().Select(m => m.GetProperty("role").GetString()));
    }

    [Fact]
    public async Task WithoutAWorkerForTheModel_TheStreamSaysSoAtOnce_AndKeepsNoMessage()
    {
        var client = Gemini.Client(Host, (await Host.NewAccountAsync()).Key);
        var id = await Gemini.NewConversationAsync(client);

        // The spec's default model name stands for the configured default (llama3.2), which no worker here serves.
        var started = Environment.TickCount64;
        await using (var stream = await Gemini.SendAsync(client, id, new { content = "Hi", model = "gemini-3-flash-preview" }))
        {
            var error = (await Gemini.NextAsync(stream)).GetProperty("error").GetString();
            Assert.Contains("no worker serves the model 'llama3.2'", error, StringComparison.Ordinal);
            Assert.Null(await stream.NextAsync());
        }
        await using (var stream = await Gemini.SendAsync(client, id, new { content = "Hi" }))
        {
            Assert.Contains("'llama3.2'", (await Gemini.NextAsync(stream)).GetProperty("error").GetString(), StringComparison.Ordinal);
        }
        // A model the grid knows whose worker is offline: the same, right away.
        var grid = await Host.NewAccountAsync();
        var model = ApiClient.Unique() + ":8b";
        var (_, workerId) = await grid.NewWorkerAsync("w", model);
        await using (var connection = await Host.OpenConnectionAsync())
        {
            await Dapper.SqlMapper.ExecuteAsync(connection, "UPDATE workers SET online = false WHERE id = @workerId", new { workerId });
        }
        await using (var stream = await Gemini.SendAsync(client, id, new { content = "Hi", model }))
        {
            Assert.Contains("right now", (await Gemini.NextAsync(stream)).GetProperty("error").GetString(), StringComparison.Ordinal);
        }
        Assert.True(Environment.TickCount64 - started < 10_000, "answered at once, not at a timeout");
        Assert.Empty((await Gemini.MessagesAsync(client, id)).EnumerateArray());
    }
}

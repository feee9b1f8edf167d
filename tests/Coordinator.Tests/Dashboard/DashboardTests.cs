using System.Net;
using System.Text.RegularExpressions;
using Coordinator.Tests.Infrastructure;
using Microsoft.Playwright;

namespace Coordinator.Tests.Dashboard;

/// <summary>The dashboard in a real headless Chromium: every test signs up its own account in its own browser context.</summary>
public sealed partial class DashboardTests(BrowserFixture fixture) : IClassFixture<BrowserFixture>
{
    private GridHost Host => fixture.Host;

    [Fact]
    public async Task SignUp_CreateWorkerKey_WorkerComesOnline_AndASubmittedJobCompletes()
    {
        var page = await fixture.NewPageAsync();
        await page.GotoAsync("/");
        Assert.EndsWith("/signin", page.Url);
        await BrowserFixture.ScreenshotAsync(page, "signin");

        var clientKey = await SignUpAsync(page, "volunteer");
        await BrowserFixture.ScreenshotAsync(page, "signup");
        await page.Context.GrantPermissionsAsync(["clipboard-read", "clipboard-write"]);
        await page.GetByRole(AriaRole.Button, new() { Name = "Copy" }).ClickAsync();
        await Assertions.Expect(page.GetByRole(AriaRole.Button, new() { Name = "Copied" })).ToBeVisibleAsync();
        Assert.Equal(clientKey, await page.EvaluateAsync<string>("navigator.clipboard.readText()"));
        await Assertions.Expect(page.GetByRole(AriaRole.Link, new() { Name = "Continue to your dashboard" })).ToHaveAttributeAsync("href", "/");
        // The key was shown once: a reload does not show it again, nor sign up a second account.
        await page.ReloadAsync();
        await Assertions.Expect(page.Locator("#new-key")).ToHaveCountAsync(0);
        await using (var connection = new Npgsql.NpgsqlConnection(Host.ConnectionString))
        {
            await connection.OpenAsync();
            await using var count = new Npgsql.NpgsqlCommand("SELECT count(*) FROM accounts WHERE name = 'volunteer'", connection);
            Assert.Equal(1L, await count.ExecuteScalarAsync());
        }
        await page.GotoAsync("/");
        await Assertions.Expect(page.GetByRole(AriaRole.Heading, new() { Name = "Overview" })).ToBeVisibleAsync();
        await Assertions.Expect(page.GetByText("No jobs yet")).ToBeVisibleAsync();

        await page.GotoAsync("/workers");
        await Assertions.Expect(page.GetByText("No workers yet — create a key for a worker, then run grid-worker with this key")).ToBeVisibleAsync();

        // A key for a worker, shown once.
        await page.GotoAsync("/keys");
        await page.GetByLabel("Name").FillAsync("gpu-box");
        await page.GetByLabel("This key is for a worker").CheckAsync();
        await page.GetByRole(AriaRole.Button, new() { Name = "Create key" }).ClickAsync();
        var workerKey = await page.Locator("#new-key").InputValueAsync();
        Assert.StartsWith("vk_live_", workerKey);
        await Assertions.Expect(page.GetByText("run grid-worker with this key")).ToBeVisibleAsync();
        await BrowserFixture.ScreenshotAsync(page, "keys-created");
        // Reloading neither shows the key again nor makes another one.
        await page.ReloadAsync();
        await Assertions.Expect(page.Locator("#new-key")).ToHaveCountAsync(0);
        await Assertions.Expect(page.Locator("tbody tr")).ToHaveCountAsync(2);

        // The worker registers through the API with that key and shows up online.
        var model = ApiClient.Unique("llama") + ":8b";
        var worker = Host.WithKey(workerKey);
        await ApiClient.ExpectAsync(await worker.PostAsync("worker/register", new
        {
            name = "gpu-box", agent_version = "1.0", platform = "linux/amd64", models = new[] { new { name = model } },
        }), HttpStatusCode.Created);
        await page.GotoAsync("/workers");
        var row = page.Locator("tr[data-worker='gpu-box']");
        await Assertions.Expect(row.GetByText("online", new() { Exact = true })).ToBeVisibleAsync();
        await Assertions.Expect(row.GetByText(model)).ToBeVisibleAsync();
        await Assertions.Expect(row.GetByText("idle")).ToBeVisibleAsync();
        await page.GotoAsync("/grid");
        await Assertions.Expect(page.GetByRole(AriaRole.Cell, new() { Name = model })).ToBeVisibleAsync();
        await BrowserFixture.ScreenshotAsync(page, "grid");

        // A job submitted with the sign-up key runs on that worker and shows as completed, output and all.
        var client = Host.WithKey(clientKey);
        var jobId = await client.SubmitAsync(new { model, model_match = "exact", prompt = "Write a haiku about queues.", tag = "poems" });
        var assignment = await worker.PollAsync($"models[]={model}");
        Assert.Equal(jobId, assignment!.Value.GetProperty("job_id").GetInt64());
        await ApiClient.ExpectAsync(await worker.PatchAsync($"worker/jobs/{jobId}/start"), HttpStatusCode.OK);
        await page.GotoAsync("/workers");
        await Assertions.Expect(page.Locator("tr[data-worker='gpu-box']").GetByText($"#{jobId}")).ToBeVisibleAsync();
        await BrowserFixture.ScreenshotAsync(page, "workers");
        await ApiClient.ExpectAsync(await worker.PostAsync($"worker/jobs/{jobId}/result", new
        {
            output = "Rows wait in order", input_tokens = 7, output_tokens = 5, duration_ms = 800, model_used = model,
        }), HttpStatusCode.OK);

        await page.GotoAsync("/jobs");
        await Assertions.Expect(page.GetByRole(AriaRole.Row).Filter(new() { HasText = $"#{jobId}" }).GetByText("completed")).ToBeVisibleAsync();
        await BrowserFixture.ScreenshotAsync(page, "jobs");
        await page.GetByRole(AriaRole.Link, new() { Name = $"#{jobId}" }).ClickAsync();
        await Assertions.Expect(page.Locator("#job-status")).ToHaveTextAsync("completed");
        await Assertions.Expect(page.Locator("#job-output")).ToHaveTextAsync("Rows wait in order");
        await Assertions.Expect(page.Locator("#job-prompt")).ToHaveTextAsync("Write a haiku about queues.");
        // Times are rewritten into the viewer's zone (the context runs in Europe/Berlin); the UTC text stays as a title.
        var created = page.Locator("time[data-local]").First;
        Assert.DoesNotContain("UTC", await created.InnerTextAsync());
        Assert.EndsWith("UTC", await created.GetAttributeAsync("title"));
        await BrowserFixture.ScreenshotAsync(page, "job");

        await page.GotoAsync("/");
        await Assertions.Expect(page.Locator("[data-status='completed']")).ToHaveTextAsync("1");
        await Assertions.Expect(page.GetByText("Tokens per day, last 30 days (total 12")).ToBeVisibleAsync();
        await Assertions.Expect(page.Locator("#quota-requests")).ToHaveAttributeAsync("value", "1");
        await BrowserFixture.ScreenshotAsync(page, "overview");

        await page.GotoAsync("/usage");
        await Assertions.Expect(page.Locator("[data-usage='daily-tokens']")).ToHaveTextAsync("12");
        foreach (var period in new[] { "daily", "weekly", "monthly" })
        {
            await Assertions.Expect(page.Locator($"section[aria-labelledby='usage-{period}'] tr").Filter(new() { HasText = "poems" })).ToContainTextAsync("12");
        }
        await BrowserFixture.ScreenshotAsync(page, "usage");

        await page.GotoAsync("/workers");
        await page.GetByRole(AriaRole.Link, new() { Name = "gpu-box" }).ClickAsync();
        await Assertions.Expect(page.Locator("#balance")).ToContainTextAsync("credits");
        await Assertions.Expect(page.Locator("#balance")).ToContainTextAsync("0.005 credits");
        await BrowserFixture.ScreenshotAsync(page, "worker");
        await page.GetByRole(AriaRole.Button, new() { Name = "Request payout" }).ClickAsync();
        await Assertions.Expect(page.GetByRole(AriaRole.Status).Filter(new() { HasText = "Payout of 0.005 credits" })).ToBeVisibleAsync();
        await Assertions.Expect(page.Locator("#balance")).ToContainTextAsync("0 credits");
        await Assertions.Expect(page.GetByRole(AriaRole.Row).Filter(new() { HasText = "800 ms" })).ToContainTextAsync("yes");
        var credits = await ApiClient.ExpectAsync(await worker.GetAsync("worker/credits"), HttpStatusCode.OK);
        Assert.Equal(0m, credits.GetProperty("balance").GetDecimal());

        // The worker key shows when it was last used.
        await page.GotoAsync("/keys");
        var keyRow = page.Locator($"tr[data-key-prefix='{workerKey[..12]}']");
        await Assertions.Expect(keyRow.GetByText("gpu-box").Last).ToBeVisibleAsync();
        Assert.DoesNotContain("never", await keyRow.InnerTextAsync());
        await page.Context.CloseAsync();
    }

    [Fact]
    public async Task ReplacingAWorkersKey_TheNewKeyIsBound_AndTheRevokedOneStopsWorking()
    {
        var page = await fixture.NewPageAsync();
        var client = Host.WithKey(await SignUpAsync(page, "revoker"));
        var (oldWorkerKey, _) = await client.NewWorkerAsync("rig", ApiClient.Unique() + ":7b");
        await ApiClient.ExpectAsync(await oldWorkerKey.PatchAsync("worker/heartbeat"), HttpStatusCode.OK);

        // A new key for the existing worker works on /worker/* at once, without registering again.
        await page.GotoAsync("/keys");
        await page.GetByLabel("Name").FillAsync("rig-2");
        await page.GetByLabel("Bind it to an existing worker (optional)").SelectOptionAsync(new SelectOptionValue { Label = "rig" });
        await page.GetByRole(AriaRole.Button, new() { Name = "Create key" }).ClickAsync();
        var newKey = await page.Locator("#new-key").InputValueAsync();
        await Assertions.Expect(page.GetByText("It is bound to the worker rig")).ToBeVisibleAsync();
        await Assertions.Expect(page.Locator($"tr[data-key-prefix='{newKey[..12]}']").GetByRole(AriaRole.Link, new() { Name = "rig" })).ToBeVisibleAsync();
        await ApiClient.ExpectAsync(await Host.WithKey(newKey).PatchAsync("worker/heartbeat"), HttpStatusCode.OK);

        // Leaving the worker choice empty makes a plain key.
        await page.GetByLabel("Name").FillAsync("plain");
        await page.GetByRole(AriaRole.Button, new() { Name = "Create key" }).ClickAsync();
        var plainKey = await page.Locator("#new-key").InputValueAsync();
        await ApiClient.ExpectAsync(await Host.WithKey(plainKey).PatchAsync("worker/heartbeat"), HttpStatusCode.Unauthorized);
        await ApiClient.ExpectAsync(await Host.WithKey(plainKey).GetAsync("jobs"), HttpStatusCode.OK);

        // Revoking the old key stops it working with the API; the new one carries on.
        var oldPrefix = oldWorkerKey.Key[..12];
        await page.GetByRole(AriaRole.Button, new() { Name = $"Revoke key rig ({oldPrefix})" }).ClickAsync();
        await Assertions.Expect(page.GetByText("Key revoked")).ToBeVisibleAsync();
        await Assertions.Expect(page.Locator($"tr[data-key-prefix='{oldPrefix}']")).ToHaveCountAsync(0);
        await ApiClient.ExpectAsync(await oldWorkerKey.PatchAsync("worker/heartbeat"), HttpStatusCode.Unauthorized);
        await ApiClient.ExpectAsync(await Host.WithKey(newKey).PatchAsync("worker/heartbeat"), HttpStatusCode.OK);
        await BrowserFixture.ScreenshotAsync(page, "keys-revoked");

        // The session's own key is untouched: still signed in.
        await page.GotoAsync("/keys");
        await Assertions.Expect(page.GetByRole(AriaRole.Heading, new() { Name = "API keys" })).ToBeVisibleAsync();
        await page.Context.CloseAsync();
    }

    [Fact]
    public async Task RevokingTheSessionsOwnKey_SignsOut()
    {
        var page = await fixture.NewPageAsync();
        var key = await SignUpAsync(page, "self-revoker");
        await page.GotoAsync("/keys");
        await page.GetByRole(AriaRole.Button, new() { Name = $"Revoke key default ({key[..12]})" }).ClickAsync();
        await Assertions.Expect(page).ToHaveURLAsync(SignInUrl());
        await ApiClient.ExpectAsync(await Host.WithKey(key).GetAsync("jobs"), HttpStatusCode.Unauthorized);
        await page.GotoAsync("/");
        await Assertions.Expect(page).ToHaveURLAsync(SignInUrl());

        // A revoked or mistyped key does not sign in.
        await page.GetByLabel("API key").FillAsync(key);
        await page.GetByRole(AriaRole.Button, new() { Name = "Sign in" }).ClickAsync();
        await Assertions.Expect(page.GetByRole(AriaRole.Alert)).ToContainTextAsync("not valid or has been revoked");
        await page.Context.CloseAsync();
    }

    [Fact]
    public async Task AnotherAccountsJobUrl_IsA404Page()
    {
        var owner = await Host.NewAccountAsync("owner");
        var jobId = await owner.SubmitAsync(new { model = "llama3:8b", prompt = "a secret prompt" });
        var (_, intruderKey) = await Host.Anonymous().SignUpAsync("intruder");

        // Sign in by pasting a key.
        var page = await fixture.NewPageAsync();
        await page.GotoAsync("/signin");
        await page.GetByLabel("API key").FillAsync(intruderKey);
        await page.GetByRole(AriaRole.Button, new() { Name = "Sign in" }).ClickAsync();
        await Assertions.Expect(page.GetByRole(AriaRole.Heading, new() { Name = "Overview" })).ToBeVisibleAsync();

        var response = await page.GotoAsync($"/jobs/{jobId}");
        Assert.Equal(404, response!.Status);
        await Assertions.Expect(page.GetByRole(AriaRole.Heading, new() { Name = "Not found" })).ToBeVisibleAsync();
        Assert.DoesNotContain("a secret prompt", await page.ContentAsync());
        await BrowserFixture.ScreenshotAsync(page, "job-not-found");
        // Nor can its buttons be reached: the page has no cancel form for a job it cannot see, so a post is refused.
        var cancel = await PostFormAsync(page, $"/jobs/{jobId}", "cancel", withToken: true);
        Assert.InRange(cancel.Status, 400, 404);
        Assert.Equal("pending", (await owner.GetJobAsync(jobId)).GetProperty("status").GetString());
        await page.Context.CloseAsync();
    }

    [Fact]
    public async Task FormsWithoutAValidAntiforgeryToken_AreRefused()
    {
        var page = await fixture.NewPageAsync();
        var key = await SignUpAsync(page, "csrf");
        var cookies = await page.Context.CookiesAsync();
        var session = Assert.Single(cookies, c => c.Name == "coordinator_session");
        Assert.True(session.HttpOnly);
        Assert.Equal(SameSiteAttribute.Strict, session.SameSite);
        Assert.DoesNotContain(key, session.Value, StringComparison.Ordinal);

        // The session cookie rides along, but there is no token, or a forged one: refused, nothing created.
        var missing = await PostFormAsync(page, "/keys", "create-key", withToken: false, ("KeyName", "forged"));
        Assert.Equal(400, missing.Status);
        var forged = await PostFormAsync(page, "/keys", "create-key", withToken: false, ("KeyName", "forged"), ("__RequestVerificationToken", "CfDJ8forged"));
        Assert.Equal(400, forged.Status);
        var signOut = await PostFormAsync(page, "/signout", null, withToken: false, ("signout", "1"));
        Assert.Equal(400, signOut.Status);
        var keys = await ApiClient.ExpectAsync(await Host.WithKey(key).GetAsync("keys"), HttpStatusCode.OK);
        Assert.DoesNotContain(keys.EnumerateArray(), k => k.GetProperty("name").GetString() == "forged");

        // With the page's own token the same post works.
        var genuine = await PostFormAsync(page, "/keys", "create-key", withToken: true, ("KeyName", "genuine"));
        Assert.Equal(302, genuine.Status);
        keys = await ApiClient.ExpectAsync(await Host.WithKey(key).GetAsync("keys"), HttpStatusCode.OK);
        Assert.Contains(keys.EnumerateArray(), k => k.GetProperty("name").GetString() == "genuine");

        // And signing out with the button ends the session.
        await page.GotoAsync("/");
        await page.GetByRole(AriaRole.Button, new() { Name = "Sign out" }).ClickAsync();
        await Assertions.Expect(page).ToHaveURLAsync(SignInUrl());
        await page.GotoAsync("/jobs");
        await Assertions.Expect(page).ToHaveURLAsync(SignInUrl());
        await page.Context.CloseAsync();
    }

    [Fact]
    public async Task ASessionFromOneNode_WorksOnAnother()
    {
        var page = await fixture.NewPageAsync();
        var key = await SignUpAsync(page, "roaming");
        await using var second = await GridHost.StartAsync(Host.ConnectionString);
        var secondRoot = second.BaseAddress.GetLeftPart(UriPartial.Authority);

        // Both nodes read the Data Protection key ring from PostgreSQL: the cookie and the form token work on either.
        await page.GotoAsync(secondRoot + "/keys");
        await Assertions.Expect(page.GetByRole(AriaRole.Heading, new() { Name = "API keys" })).ToBeVisibleAsync();
        await page.GetByLabel("Name").FillAsync("made-on-node-2");
        await page.GetByRole(AriaRole.Button, new() { Name = "Create key" }).ClickAsync();
        Assert.StartsWith("vk_live_", await page.Locator("#new-key").InputValueAsync());
        var keys = await ApiClient.ExpectAsync(await Host.WithKey(key).GetAsync("keys"), HttpStatusCode.OK);
        Assert.Contains(keys.EnumerateArray(), k => k.GetProperty("name").GetString() == "made-on-node-2");
        await page.Context.CloseAsync();
    }

    [Fact]
    public async Task DashboardPages_CannotBeFramed_AndStayOutOfTheApiDocument()
    {
        var page = await fixture.NewPageAsync();
        var response = await page.GotoAsync("/signin");
        var policy = await response!.HeaderValueAsync("content-security-policy");
        Assert.Contains("frame-ancestors 'none'", policy);
        Assert.Contains("form-action 'self'", policy);
        Assert.Equal("nosniff", await response.HeaderValueAsync("x-content-type-options"));
        var css = await page.Context.APIRequest.GetAsync("/dashboard/assets/dashboard.css");
        Assert.Equal(200, css.Status);
        Assert.StartsWith("text/css", css.Headers["content-type"]);
        Assert.Equal(404, (await page.Context.APIRequest.GetAsync("/dashboard/assets/secrets.json")).Status);

        // A mistyped dashboard address is an HTML page with a way back; the API keeps its JSON 404.
        var missing = await page.GotoAsync("/no-such-page");
        Assert.Equal(404, missing!.Status);
        await Assertions.Expect(page.GetByRole(AriaRole.Link, new() { Name = "the dashboard" })).ToHaveAttributeAsync("href", "/");
        var apiMissing = await ApiClient.ExpectAsync(await Host.Anonymous().GetAsync("no-such-endpoint"), HttpStatusCode.NotFound);
        Assert.Equal("not_found", apiMissing.GetProperty("error").GetString());

        var document = await ApiClient.ExpectAsync(await Host.Anonymous().GetAsync("openapi/v1.json"), HttpStatusCode.OK);
        var paths = document.GetProperty("paths").EnumerateObject().Select(p => p.Name).ToList();
        Assert.Contains(paths, p => p.StartsWith("/api/v1/jobs", StringComparison.Ordinal));
        Assert.All(paths, p => Assert.StartsWith("/api/v1/", p));
        await page.Context.CloseAsync();
    }

    [Fact]
    public async Task JobButtons_ChangePriority_Cancel_AndRetry()
    {
        var page = await fixture.NewPageAsync(width: 390, height: 844);
        var key = await SignUpAsync(page, "buttons");
        var client = Host.WithKey(key);
        var pending = await client.SubmitAsync(new { model = ApiClient.Unique() + ":1b", model_match = "exact", prompt = "wait" });

        await page.GotoAsync($"/jobs/{pending}");
        var before = int.Parse(await page.Locator("#job-priority").InnerTextAsync(), System.Globalization.CultureInfo.InvariantCulture);
        await page.GetByLabel("Change priority by").FillAsync("25");
        await page.GetByRole(AriaRole.Button, new() { Name = "Change priority" }).ClickAsync();
        await Assertions.Expect(page.Locator("#job-priority")).ToHaveTextAsync((before + 25).ToString(System.Globalization.CultureInfo.InvariantCulture));
        await BrowserFixture.ScreenshotAsync(page, "job-pending-phone");
        await page.GetByRole(AriaRole.Button, new() { Name = "Cancel job" }).ClickAsync();
        await Assertions.Expect(page.Locator("#job-status")).ToHaveTextAsync("cancelled");
        Assert.Equal("cancelled", (await client.GetJobAsync(pending)).GetProperty("status").GetString());
        await Assertions.Expect(page.GetByRole(AriaRole.Button, new() { Name = "Cancel job" })).ToHaveCountAsync(0);

        // A failed job can be retried.
        var (worker, failed, _) = await client.SubmitAndClaimAsync();
        await ApiClient.ExpectAsync(await worker.PostAsync($"worker/jobs/{failed}/fail", new { error = "out of memory" }), HttpStatusCode.OK);
        await page.GotoAsync($"/jobs/{failed}");
        await Assertions.Expect(page.Locator("#job-error")).ToHaveTextAsync("out of memory");
        await page.GetByRole(AriaRole.Button, new() { Name = "Retry job" }).ClickAsync();
        await Assertions.Expect(page.Locator("#job-status")).ToHaveTextAsync("pending");
        Assert.Equal("pending", (await client.GetJobAsync(failed)).GetProperty("status").GetString());

        // Filters: only the cancelled job is listed under status=cancelled.
        await page.GotoAsync("/jobs");
        await page.GetByLabel("Status").SelectOptionAsync("cancelled");
        await page.GetByRole(AriaRole.Button, new() { Name = "Filter" }).ClickAsync();
        await Assertions.Expect(page.GetByRole(AriaRole.Link, new() { Name = $"#{pending}" })).ToBeVisibleAsync();
        await Assertions.Expect(page.GetByRole(AriaRole.Link, new() { Name = $"#{failed}" })).ToHaveCountAsync(0);
        await page.GotoAsync("/");
        await BrowserFixture.ScreenshotAsync(page, "overview-phone");
        await page.Context.CloseAsync();
    }

    [Fact]
    public async Task JobPage_ShowsWhereAPendingJobStands_JobsAhead_ExpectedStart_AndTheNoWorkerWarning()
    {
        var page = await fixture.NewPageAsync();
        var key = await SignUpAsync(page, "queue");
        var client = Host.WithKey(key);
        var model = ApiClient.Unique() + ":1b";
        var first = await client.SubmitAsync(new { model, model_match = "exact", prompt = "first" });
        var second = await client.SubmitAsync(new { model, model_match = "exact", prompt = "second" });

        await page.GotoAsync($"/jobs/{second}");
        await Assertions.Expect(page.Locator("#job-queue-position")).ToHaveTextAsync("1");
        await Assertions.Expect(page.Locator("#job-warning")).ToContainTextAsync("No online worker serves this model");
        await Assertions.Expect(page.Locator("#job-eta")).ToHaveTextAsync("unknown: no worker took a job of this model lately");

        // A worker comes online and takes the first job: the second is at the head, with a rate to go on.
        var (worker, _) = await client.NewWorkerAsync("w", model);
        Assert.Equal(first, (await worker.PollAsync($"models[]={model}"))!.Value.GetProperty("job_id").GetInt64());
        await page.GotoAsync($"/jobs/{second}");
        await Assertions.Expect(page.Locator("#job-queue-position")).ToHaveTextAsync("0");
        await Assertions.Expect(page.Locator("#job-warning")).ToHaveCountAsync(0);
        await Assertions.Expect(page.Locator("#job-eta")).ToHaveTextAsync(new Regex(@"^in about \d+ (s|min)$"));
        await BrowserFixture.ScreenshotAsync(page, "job-queue");

        // A job that left the queue has no place in it.
        await page.GotoAsync($"/jobs/{first}");
        await Assertions.Expect(page.Locator("#job-status")).ToHaveTextAsync("claimed");
        await Assertions.Expect(page.Locator("#job-queue-position")).ToHaveCountAsync(0);
        await page.Context.CloseAsync();
    }

    [Fact]
    public async Task JobsTable_PagesAndFilters_AndSignInReturnsToThePageAsked()
    {
        var (_, key) = await Host.Anonymous().SignUpAsync("pager");
        var client = Host.WithKey(key);
        var ids = new List<long>();
        for (var i = 0; i < 27; i++) ids.Add(await client.SubmitAsync(new { model = "llama3:8b", prompt = $"job {i}", tag = i % 3 == 0 ? "third" : "rest" }));

        // Not signed in: the sign-in page, which then returns to the page asked for (but never off-site).
        var page = await fixture.NewPageAsync();
        await page.GotoAsync("/jobs?tag=third");
        await Assertions.Expect(page).ToHaveURLAsync(new Regex("/signin\\?returnUrl="));
        await page.GetByLabel("API key").FillAsync(key);
        await page.GetByRole(AriaRole.Button, new() { Name = "Sign in" }).ClickAsync();
        await Assertions.Expect(page).ToHaveURLAsync(new Regex("/jobs\\?tag=third$"));
        await Assertions.Expect(page.Locator("tbody tr")).ToHaveCountAsync(9);
        await Assertions.Expect(page.GetByLabel("Tag")).ToHaveValueAsync("third");

        await page.GotoAsync("/jobs");
        await Assertions.Expect(page.Locator("tbody tr")).ToHaveCountAsync(25);
        await Assertions.Expect(page.Locator("tbody tr").First).ToContainTextAsync($"#{ids[^1]}");
        await page.GetByRole(AriaRole.Link, new() { Name = "Older →" }).ClickAsync();
        await Assertions.Expect(page.Locator("tbody tr")).ToHaveCountAsync(2);
        await Assertions.Expect(page.Locator("tbody tr").Last).ToContainTextAsync($"#{ids[0]}");
        await Assertions.Expect(page.GetByRole(AriaRole.Link, new() { Name = "Older →" })).ToHaveCountAsync(0);
        await page.GetByRole(AriaRole.Link, new() { Name = "← Newer" }).ClickAsync();
        await Assertions.Expect(page.Locator("tbody tr")).ToHaveCountAsync(25);

        // A date range that ends before today finds nothing, and says how to get back.
        await page.GetByLabel("To (UTC date, inclusive)").FillAsync("2020-01-01");
        await page.GetByRole(AriaRole.Button, new() { Name = "Filter" }).ClickAsync();
        await Assertions.Expect(page.GetByText("No jobs match these filters")).ToBeVisibleAsync();

        var other = await fixture.NewPageAsync();
        await other.GotoAsync("/signin?returnUrl=//evil.example/");
        await other.GetByLabel("API key").FillAsync(key);
        await other.GetByRole(AriaRole.Button, new() { Name = "Sign in" }).ClickAsync();
        await Assertions.Expect(other.GetByRole(AriaRole.Heading, new() { Name = "Overview" })).ToBeVisibleAsync();
        Assert.StartsWith(fixture.Root, other.Url);
        await other.Context.CloseAsync();
        await page.Context.CloseAsync();
    }

    [Fact]
    public async Task EveryPage_IsUsableByKeyboard_LabelsEveryControl_AndFitsAPhone()
    {
        var (_, key) = await Host.Anonymous().SignUpAsync("keyboard");
        var jobId = await Host.WithKey(key).SubmitAsync(new { model = "llama3:8b", prompt = "p", tag = "t" });
        var page = await fixture.NewPageAsync(width: 360, height: 740);

        // Sign in with the keyboard alone: skip link first, then the key field, Enter submits.
        await page.GotoAsync("/signin");
        await page.Keyboard.PressAsync("Tab");
        Assert.Equal("Skip to content", await page.EvaluateAsync<string>("document.activeElement.textContent"));
        await page.Keyboard.PressAsync("Enter");
        await page.Keyboard.PressAsync("Tab");
        Assert.Equal("api-key", await page.EvaluateAsync<string>("document.activeElement.id"));
        await page.Keyboard.TypeAsync(key);
        await page.Keyboard.PressAsync("Enter");
        await Assertions.Expect(page.GetByRole(AriaRole.Heading, new() { Name = "Overview" })).ToBeVisibleAsync();

        foreach (var path in new[] { "/", "/jobs", $"/jobs/{jobId}", "/keys", "/workers", "/grid", "/usage", "/signup", "/signin" })
        {
            await page.GotoAsync(path);
            var unlabelled = await page.EvaluateAsync<string[]>("""
                [...document.querySelectorAll('input:not([type=hidden]), select, textarea')]
                  .filter(e => !(e.labels && e.labels.length) && !e.getAttribute('aria-label'))
                  .map(e => e.outerHTML)
                """);
            Assert.True(unlabelled.Length == 0, $"{path} has controls without a label: {string.Join(", ", unlabelled)}");
            var overflow = await page.EvaluateAsync<int>("document.documentElement.scrollWidth - window.innerWidth");
            var wide = overflow <= 0 ? [] : await page.EvaluateAsync<string[]>("""
                [...document.querySelectorAll('body *')].filter(e => e.getBoundingClientRect().right > window.innerWidth + 1)
                  .map(e => e.tagName.toLowerCase() + (e.id ? '#' + e.id : '') + (e.className ? '.' + e.className : '')).slice(0, 8)
                """);
            Assert.True(overflow <= 0, $"{path} is {overflow} px wider than a 360 px screen: {string.Join(", ", wide)}");
        }
        await page.GotoAsync("/keys");
        await BrowserFixture.ScreenshotAsync(page, "keys-phone");

        // Tab reaches the nav and the sign-out button, and Enter on a nav link follows it.
        await page.GotoAsync("/");
        await page.Locator("nav a", new() { HasText = "Jobs" }).FocusAsync();
        await page.Keyboard.PressAsync("Enter");
        await Assertions.Expect(page.GetByRole(AriaRole.Heading, new() { Name = "Jobs" })).ToBeVisibleAsync();
        await page.Context.CloseAsync();
    }

    /// <summary>Signs up in the browser; answers the key the page showed once.</summary>
    private static async Task<string> SignUpAsync(IPage page, string name)
    {
        await page.GotoAsync("/signup");
        await page.GetByLabel("Account name").FillAsync(name);
        await page.GetByRole(AriaRole.Button, new() { Name = "Create account" }).ClickAsync();
        var key = await page.Locator("#new-key").InputValueAsync();
        Assert.StartsWith("vk_live_", key);
        return key;
    }

    /// <summary>
    /// Posts a form from the page's browser context (its cookies go along), as a cross-site form would:
    /// with the page's real antiforgery token only when <paramref name="withToken"/>.
    /// </summary>
    private static async Task<IAPIResponse> PostFormAsync(IPage page, string path, string? handler, bool withToken, params (string Name, string Value)[] fields)
    {
        var form = page.Context.APIRequest.CreateFormData();
        if (handler is not null) form.Set("_handler", handler);
        foreach (var (name, value) in fields) form.Set(name, value);
        if (withToken)
        {
            await page.GotoAsync(path);
            form.Set("__RequestVerificationToken", await page.Locator("input[name='__RequestVerificationToken']").First.InputValueAsync());
        }
        return await page.Context.APIRequest.PostAsync(path, new() { Form = form, MaxRedirects = 0 });
    }

    [GeneratedRegex("/signin(\\?returnUrl=[^&]*)?$")]
    private static partial Regex SignInUrl();
}

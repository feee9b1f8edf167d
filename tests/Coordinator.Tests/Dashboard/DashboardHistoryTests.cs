using System.Net;
using Coordinator.Tests.Infrastructure;
using Microsoft.Playwright;

namespace Coordinator.Tests.Dashboard;

/// <summary>A month of activity on a manual clock, then the overview's charts and the usage page in the browser.</summary>
public sealed class DashboardHistoryTests(ClockBrowserFixture fixture) : IClassFixture<ClockBrowserFixture>
{
    private static readonly string[] Tags = ["chat", "summaries", "eval"];

    [Fact]
    public async Task Overview_ChartsAMonthOfTokensAndADayOfJobs()
    {
        var host = fixture.Host;
        var clock = fixture.Clock;
        var client = await host.NewAccountAsync("acme-research");
        var model = ApiClient.Unique("llama") + ":8b";
        var (worker, _) = await client.NewWorkerAsync("gpu-box", model);
        var completedAt = new List<DateTime>();
        var submittedAt = new List<DateTime>();

        async Task RunJobAsync(int n)
        {
            var id = await client.SubmitAsync(new { model, model_match = "exact", prompt = $"job {n}", tag = Tags[n % Tags.Length] });
            submittedAt.Add(clock.GetUtcNow().UtcDateTime);
            Assert.Equal(id, (await worker.PollAsync($"models[]={model}"))!.Value.GetProperty("job_id").GetInt64());
            await ApiClient.ExpectAsync(await worker.PatchAsync($"worker/jobs/{id}/start"), HttpStatusCode.OK);
            await ApiClient.ExpectAsync(await worker.PostAsync($"worker/jobs/{id}/result", new
            {
                output = "done", input_tokens = 40 + n % 50, output_tokens = 120 + (n * 37) % 400, duration_ms = 900, model_used = model,
            }), HttpStatusCode.OK);
            completedAt.Add(clock.GetUtcNow().UtcDateTime);
        }

        // 29 days with work on most of them, then a busy last day hour by hour.
        var n = 0;
        for (var day = 0; day < 29; day++)
        {
            if (day % 6 != 5)
            {
                for (var i = 0; i < 1 + (day * 7) % 4; i++) await RunJobAsync(n++);
            }
            clock.Advance(TimeSpan.FromDays(1));
        }
        for (var hour = 0; hour < 24; hour++)
        {
            clock.Advance(TimeSpan.FromHours(1));
            if (hour % 5 == 3) continue;
            for (var i = 0; i < 1 + hour % 3; i++) await RunJobAsync(n++);
        }
        var hooked = await client.SubmitAsync(new { model, model_match = "exact", prompt = "call me", webhook_url = "http://127.0.0.1:9/hook" });
        Assert.Equal(hooked, (await worker.PollAsync($"models[]={model}"))!.Value.GetProperty("job_id").GetInt64());
        await ApiClient.ExpectAsync(await worker.PostAsync($"worker/jobs/{hooked}/fail", new { error = "model crashed" }), HttpStatusCode.OK);
        var waiting = await client.SubmitAsync(new { model = "mistral:7b", prompt = "nobody serves this yet" });
        await client.SubmitAsync(new { model = "mistral:7b", prompt = "nor this" });
        await ApiClient.ExpectAsync(await client.DeleteAsync($"jobs/{waiting}"), HttpStatusCode.OK);

        var page = await fixture.NewPageAsync();
        await page.GotoAsync("/signin");
        await page.GetByLabel("API key").FillAsync(client.Key);
        await page.GetByRole(AriaRole.Button, new() { Name = "Sign in" }).ClickAsync();
        await Assertions.Expect(page.Locator("[data-status='completed']")).ToHaveTextAsync(n.ToString(System.Globalization.CultureInfo.InvariantCulture));
        await Assertions.Expect(page.Locator("[data-status='pending']")).ToHaveTextAsync("1");
        await Assertions.Expect(page.Locator("[data-status='cancelled']")).ToHaveTextAsync("1");
        await Assertions.Expect(page.Locator("[data-status='failed']")).ToHaveTextAsync("1");
        // Today (UTC) is the hour-by-hour day: a request counts when its job is claimed (the completed ones and the failed one).
        var today = clock.GetUtcNow().UtcDateTime.Date;
        await Assertions.Expect(page.Locator("#quota-requests")).ToHaveAttributeAsync("value", (completedAt.Count(t => t >= today) + 1).ToString(System.Globalization.CultureInfo.InvariantCulture));

        // One bar per hour (and per day) that had any: the charts are drawn from the same rows the API reads.
        var now = clock.GetUtcNow().UtcDateTime;
        var hourStart = new DateTime(now.Year, now.Month, now.Day, now.Hour, 0, 0, DateTimeKind.Utc).AddHours(-23);
        // The two mistral jobs were submitted this hour too.
        var busyHours = submittedAt.Append(now).Where(t => t >= hourStart).Select(t => t.Ticks / TimeSpan.TicksPerHour).Distinct().Count();
        var busyDays = completedAt.Where(t => t >= now.Date.AddDays(-29)).Select(t => t.Date).Distinct().Count();
        var charts = page.Locator("figure.chart");
        await Assertions.Expect(charts.Nth(0).Locator("rect.bar:not([height='0'])")).ToHaveCountAsync(busyHours);
        await Assertions.Expect(charts.Nth(1).Locator("rect.bar:not([height='0'])")).ToHaveCountAsync(busyDays);
        await Assertions.Expect(charts.Nth(1).Locator("rect.bar")).ToHaveCountAsync(30);
        await BrowserFixture.ScreenshotAsync(page, "overview-month");

        await page.GotoAsync("/usage");
        foreach (var tag in Tags)
        {
            await Assertions.Expect(page.Locator("section[aria-labelledby='usage-monthly'] tr").Filter(new() { HasText = tag })).ToHaveCountAsync(1);
        }
        await BrowserFixture.ScreenshotAsync(page, "usage-month");

        // The failed job's page shows its error and the webhook delivery queued when it failed.
        await page.GotoAsync($"/jobs/{hooked}");
        await Assertions.Expect(page.Locator("#job-error")).ToHaveTextAsync("model crashed");
        await Assertions.Expect(page.GetByRole(AriaRole.Link, new() { Name = "gpu-box" })).ToBeVisibleAsync();
        await Assertions.Expect(page.GetByText("No output: the job failed")).ToBeVisibleAsync();
        var delivery = page.Locator("section[aria-labelledby='webhook-heading'] tbody tr");
        await Assertions.Expect(delivery).ToHaveCountAsync(1);
        await Assertions.Expect(delivery).ToContainTextAsync("failed");
        await Assertions.Expect(delivery).ToContainTextAsync("pending");
        await Assertions.Expect(page.GetByRole(AriaRole.Button, new() { Name = "Retry job" })).ToBeVisibleAsync();
        await BrowserFixture.ScreenshotAsync(page, "job-failed");

        // Grid totals: two quiet minutes later the worker counts as offline until it is heard from again.
        clock.Advance(TimeSpan.FromMinutes(2));
        await page.GotoAsync("/grid");
        await Assertions.Expect(page.Locator("#grid-workers")).ToHaveTextAsync("0");
        await Assertions.Expect(page.GetByText("No model is being served right now")).ToBeVisibleAsync();
        await ApiClient.ExpectAsync(await worker.PatchAsync("worker/heartbeat"), HttpStatusCode.OK);
        await page.ReloadAsync();
        await Assertions.Expect(page.Locator("#grid-workers")).ToHaveTextAsync("1");
        await Assertions.Expect(page.Locator("#grid-pending")).ToHaveTextAsync("1");
        await Assertions.Expect(page.Locator("#grid-running")).ToHaveTextAsync("0");
        await Assertions.Expect(page.Locator("#grid-completed")).ToHaveTextAsync(completedAt.Count(t => t >= today).ToString(System.Globalization.CultureInfo.InvariantCulture));
        await Assertions.Expect(page.GetByRole(AriaRole.Row).Filter(new() { HasText = model })).ToContainTextAsync("1");
        await BrowserFixture.ScreenshotAsync(page, "grid-month");
        await page.Context.CloseAsync();
    }
}

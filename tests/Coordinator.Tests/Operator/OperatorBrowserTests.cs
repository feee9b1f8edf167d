using Coordinator.Api.Operator;
using Coordinator.Tests.Infrastructure;

namespace Coordinator.Tests.Operator;

/// <summary>A node with an operator key and a headless Chromium.</summary>
public sealed class OperatorBrowserFixture : BrowserFixture
{
    public string OperatorKey { get; } = OperatorKeys.Generate();

    protected override Task<GridHost> StartHostAsync() => GridHost.StartAsync(settings: OperatorHost.Settings(OperatorKey));
}

/// <summary>An operator signs in with a browser and the Orleans Dashboard runs under its cookie and the operator CSP.</summary>
public sealed class OperatorBrowserTests(OperatorBrowserFixture fixture) : IClassFixture<OperatorBrowserFixture>
{
    [Fact]
    public async Task AnOperatorSignsIn_AndTheDashboardLoadsItsData()
    {
        var page = await fixture.NewPageAsync();
        var blocked = new List<string>();
        page.Console += (_, message) =>
        {
            if (message.Text.Contains("Content Security Policy", StringComparison.OrdinalIgnoreCase)) blocked.Add(message.Text);
        };
        await page.GotoAsync("/operator/dashboard/");
        Assert.Contains("/operator/signin", page.Url, StringComparison.Ordinal);

        await page.FillAsync("#key", "op_not-the-key");
        await page.ClickAsync("button[type=submit]");
        Assert.Contains("That is not an operator key.", await page.ContentAsync(), StringComparison.Ordinal);

        var counters = page.WaitForResponseAsync(response => response.Url.Contains("/operator/dashboard/DashboardCounters", StringComparison.Ordinal) && response.Status == 200);
        await page.FillAsync("#key", fixture.OperatorKey);
        await page.ClickAsync("button[type=submit]");
        await counters;
        Assert.EndsWith("/operator/dashboard/", page.Url, StringComparison.Ordinal);
        await BrowserFixture.ScreenshotAsync(page, "operator-dashboard");
        Assert.True(blocked.Count == 0, string.Join("\n", blocked));
    }
}

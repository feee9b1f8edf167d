using Microsoft.Playwright;

namespace Coordinator.Tests.Infrastructure;

/// <summary>
/// One coordinator node and one headless Chromium (Debian's <c>/usr/bin/chromium</c>, which .ci/run installs;
/// Playwright's own browser download is not used) shared by a test class. Each test opens its own browser
/// context, so cookies never leak between tests.
/// </summary>
public class BrowserFixture : IAsyncLifetime
{
    private const string DefaultChromium = "/usr/bin/chromium";

    private IPlaywright? _playwright;
    private IBrowser? _browser;
    private GridHost? _host;

    public GridHost Host => _host ?? throw new InvalidOperationException("not started");

    /// <summary>The dashboard's root, e.g. <c>http://127.0.0.1:41234</c> (no trailing slash).</summary>
    public string Root => Host.BaseAddress.GetLeftPart(UriPartial.Authority);

    /// <summary>Where screenshots go: TestResults/screenshots at the repository root (a test artifact).</summary>
    public static string ScreenshotDirectory { get; } = Path.Combine(FindRepositoryRoot(), "TestResults", "screenshots");

    public async Task InitializeAsync()
    {
        var chromium = Environment.GetEnvironmentVariable("COORDINATOR_CHROMIUM") ?? DefaultChromium;
        if (!File.Exists(chromium)) throw new InvalidOperationException($"Chromium not found at {chromium}: apt-get install chromium (or run .ci/run), or set COORDINATOR_CHROMIUM.");
        _host = await StartHostAsync();
        _playwright = await Playwright.CreateAsync();
        _browser = await _playwright.Chromium.LaunchAsync(new BrowserTypeLaunchOptions
        {
            ExecutablePath = chromium,
            Headless = true,
            // Running as root in CI containers needs --no-sandbox; /dev/shm is small there.
            Args = ["--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu"],
        });
        Directory.CreateDirectory(ScreenshotDirectory);
    }

    protected virtual Task<GridHost> StartHostAsync() => GridHost.StartAsync();

    /// <summary>A fresh browser context (no cookies) and a page in it, at phone or desktop width.</summary>
    public async Task<IPage> NewPageAsync(int width = 1200, int height = 900)
    {
        var context = await _browser!.NewContextAsync(new BrowserNewContextOptions
        {
            BaseURL = Root,
            ViewportSize = new ViewportSize { Width = width, Height = height },
            TimezoneId = "Europe/Berlin",
            Locale = "en-GB",
        });
        context.SetDefaultTimeout(15_000);
        return await context.NewPageAsync();
    }

    public static Task ScreenshotAsync(IPage page, string name) =>
        page.ScreenshotAsync(new PageScreenshotOptions { Path = Path.Combine(ScreenshotDirectory, name + ".png"), FullPage = true });

    public async Task DisposeAsync()
    {
        if (_browser is not null) await _browser.CloseAsync();
        _playwright?.Dispose();
        if (_host is not null) await _host.DisposeAsync();
    }

    private static string FindRepositoryRoot()
    {
        for (var directory = new DirectoryInfo(AppContext.BaseDirectory); directory is not null; directory = directory.Parent)
        {
            if (File.Exists(Path.Combine(directory.FullName, "Orleans.sln"))) return directory.FullName;
        }
        return AppContext.BaseDirectory;
    }
}

/// <summary>
/// A <see cref="BrowserFixture"/> whose node runs on a manual clock, starting at 23:00 UTC 30 days ago, so that a test
/// that advances it 29 days and then 24 hours ends late in today's UTC day.
/// </summary>
public sealed class ClockBrowserFixture : BrowserFixture
{
    public ManualTimeProvider Clock { get; } = new(new DateTimeOffset(DateTime.UtcNow.Date.AddDays(-29).AddHours(-1), TimeSpan.Zero));

    // Webhooks to loopback are allowed (and never sent) so that a job page can show a delivery.
    protected override Task<GridHost> StartHostAsync() => GridHost.StartAsync(time: Clock, settings: new Dictionary<string, string?>
    {
        ["Webhooks:AllowPrivateNetworks"] = "true",
        ["Webhooks:RunSender"] = "false",
    });
}

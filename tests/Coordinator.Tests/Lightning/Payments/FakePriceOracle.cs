using System.Globalization;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Hosting.Server;
using Microsoft.AspNetCore.Hosting.Server.Features;
using Microsoft.AspNetCore.Http;
using Microsoft.Extensions.DependencyInjection;
using Coordinator.Tests.Infrastructure;

namespace Coordinator.Tests.Lightning.Payments;

/// <summary>The body shape <see cref="FakePriceOracle"/> answers in.</summary>
public enum FakePriceFormat
{
    /// <summary>CoinGecko's simple price: <c>{"bitcoin": {"usd": 67123.45}}</c>.</summary>
    CoinGecko,

    /// <summary>Coinbase's spot price: <c>{"data": {"amount": "67123.45", "base": "BTC", "currency": "USD"}}</c>.</summary>
    Coinbase,
}

/// <summary>
/// A BTC/USD price source on loopback: <c>GET {Url}</c> answers <see cref="UsdPrice"/> in <see cref="Format"/>. It can be made
/// to answer another status (<see cref="StatusCode"/>), any body (<see cref="Body"/>), or to hang (<see cref="Gate"/>).
/// </summary>
public sealed class FakePriceOracle : IAsyncDisposable
{
    private readonly WebApplication _app;
    private readonly CancellationTokenSource _stopping = new();
    private int _requests;

    private FakePriceOracle(WebApplication app) => _app = app;

    /// <summary>The price source's address, for <c>Lightning:Price:Url</c>.</summary>
    public string Url { get; private set; } = null!;

    public decimal UsdPrice { get; set; } = 67_123.45m;

    public FakePriceFormat Format { get; set; } = FakePriceFormat.CoinGecko;

    public int StatusCode { get; set; } = StatusCodes.Status200OK;

    /// <summary>When set, answered as it is instead of the price.</summary>
    public string? Body { get; set; }

    /// <summary>Close it to make the source hang: requests wait until it opens again.</summary>
    public RequestGate Gate { get; } = new();

    /// <summary>Requests received, answered or not.</summary>
    public int Requests => Volatile.Read(ref _requests);

    public static async Task<FakePriceOracle> StartAsync()
    {
        var builder = Loopback.CreateBuilder();
        var app = builder.Build();
        var fake = new FakePriceOracle(app);
        app.MapGet("/price", (Delegate)fake.AnswerAsync);
        await app.StartAsync();
        var address = Loopback.AddressOf(app);
        fake.Url = address.TrimEnd('/') + "/price";
        return fake;
    }

    private async Task<IResult> AnswerAsync(HttpContext context)
    {
        Interlocked.Increment(ref _requests);
        using (var either = CancellationTokenSource.CreateLinkedTokenSource(context.RequestAborted, _stopping.Token))
        {
            await Gate.PassAsync(either.Token);
        }
        var price = UsdPrice.ToString(CultureInfo.InvariantCulture);
        var body = Body ?? (Format == FakePriceFormat.CoinGecko
            ? $$$"""{"bitcoin":{"usd":{{{price}}}}}"""
            : $$$"""{"data":{"amount":"{{{price}}}","base":"BTC","currency":"USD"}}""");
        return Results.Text(body, "application/json", statusCode: StatusCode);
    }

    public async ValueTask DisposeAsync()
    {
        await _stopping.CancelAsync();
        await _app.DisposeAsync();
        _stopping.Dispose();
    }
}

using System.Text.Json.Serialization;
using Coordinator.Grains.Lightning.Payments;
using Microsoft.Extensions.Options;

namespace Coordinator.Api.Lightning;

/// <summary>The development route's answer: <c>{"ok": true, "paymentHash": "…"}</c>, in the agent API's camelCase.</summary>
public sealed record StubPaidDto(
    [property: JsonPropertyName("ok")] bool Ok,
    [property: JsonPropertyName("paymentHash")] string PaymentHash);

/// <summary>
/// <c>POST /api/dev/stub/pay/{paymentHash}</c>: pays a stub invoice, as a payer's wallet would, so that stub mode can be
/// driven end to end without a Lightning network. It exists only where nothing real is at stake: the node is the stub
/// and the host is not Production. It is not part of the agent API's contract, so it stays out of the OpenAPI document.
/// </summary>
public static class LightningStubRoutes
{
    public const string PayPattern = "/api/dev/stub/pay/{paymentHash}";

    /// <summary>Whether the development route may exist: stub mode (no LNbits configured) on a host that is not Production.</summary>
    public static bool ShouldMap(IHostEnvironment environment, LightningOptions options) => options.IsStub && !environment.IsProduction();

    /// <summary>
    /// Maps the development route on the root of <paramref name="routes"/> (its path is absolute) when
    /// <see cref="ShouldMap"/> says so, and maps nothing otherwise; needs <c>AddLightningPayments</c>.
    /// </summary>
    public static IEndpointRouteBuilder MapLightningStubRoutes(this IEndpointRouteBuilder routes)
    {
        var services = routes.ServiceProvider;
        if (!ShouldMap(services.GetRequiredService<IHostEnvironment>(), services.GetRequiredService<IOptions<LightningOptions>>().Value)) return routes;
        routes.MapPost(PayPattern, PayAsync).ExcludeFromDescription();
        return routes;
    }

    public static async Task<IResult> PayAsync(string paymentHash, StubLightningNode node, CancellationToken cancellationToken) =>
        await node.MarkPaidAsync(paymentHash, cancellationToken)
            ? TypedResults.Ok(new StubPaidDto(true, paymentHash))
            : AgentErrors.Error(StatusCodes.Status404NotFound, "no stub invoice has this payment hash");
}

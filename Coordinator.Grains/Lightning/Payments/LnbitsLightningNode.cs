using System.Globalization;
using System.Net;
using System.Net.Http.Json;
using System.Text.Json;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Options;

namespace Coordinator.Grains.Lightning.Payments;

/// <summary>
/// An LNbits wallet over its REST API: <c>POST /api/v1/payments</c> with <c>out: false</c> makes an invoice and with
/// <c>out: true</c> pays one, <c>GET /api/v1/payments/{hash}</c> says whether an invoice is paid. Each request carries the
/// wallet key it needs in <c>X-Api-Key</c>: the invoice/read key for invoices, the admin key only for paying and for reading
/// an outgoing payment back. Every request
/// is bounded by <see cref="LightningOptions.RequestTimeout"/> on the injected <see cref="TimeProvider"/>.
/// A singleton over a named <see cref="IHttpClientFactory"/> client (not a typed client, which the container makes
/// transient), so that grains and singletons alike can hold it.
/// </summary>
public sealed partial class LnbitsLightningNode : ILightningNode
{
    /// <summary>The <see cref="IHttpClientFactory"/> client LNbits requests go through.</summary>
    public const string HttpClientName = "Lnbits";

    private const string PaymentsPath = "api/v1/payments";

    private readonly IHttpClientFactory _httpClients;
    private readonly LightningOptions _options;
    private readonly Uri _baseAddress;
    private readonly TimeProvider _time;
    private readonly ILogger<LnbitsLightningNode> _logger;

    public LnbitsLightningNode(IHttpClientFactory httpClients, IOptions<LightningOptions> options, TimeProvider time, ILogger<LnbitsLightningNode> logger)
    {
        _httpClients = httpClients;
        _options = options.Value;
        if (_options.IsStub) throw new InvalidOperationException("Lightning:LnbitsUrl is not set; the stub serves stub mode.");
        // With a trailing slash, so that an LNbits served under a path (https://host/lnbits) keeps it.
        _baseAddress = new Uri(_options.LnbitsUrl!.TrimEnd('/') + "/");
        _time = time;
        _logger = logger;
    }

    public bool IsStub => false;

    public async Task<LightningInvoice> CreateInvoiceAsync(long amountSats, string memo, CancellationToken cancellationToken)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(amountSats, 1);
        var body = await SendAsync(HttpMethod.Post, PaymentsPath, _options.InvoiceKey!,
            new { @out = false, amount = amountSats, unit = "sat", memo }, "create an invoice", cancellationToken);
        return LnbitsAnswers.Invoice(body!.Value, amountSats);
    }

    public async Task<bool> IsPaidAsync(string paymentHash, CancellationToken cancellationToken)
    {
        var body = await SendAsync(HttpMethod.Get, $"{PaymentsPath}/{Uri.EscapeDataString(paymentHash)}", _options.InvoiceKey!,
            null, "check the invoice", cancellationToken);
        return LnbitsAnswers.Paid(body!.Value);
    }

    /// <summary><c>GET /api/v1/payments/{hash}</c> with the admin key, which sees the wallet's outgoing payments; 404 is unknown.</summary>
    public async Task<OutgoingPaymentStatus> GetPaymentAsync(string paymentHash, CancellationToken cancellationToken)
    {
        var body = await SendAsync(HttpMethod.Get, $"{PaymentsPath}/{Uri.EscapeDataString(paymentHash)}", _options.AdminKey!,
            null, "check the payment", cancellationToken, notFoundIsNull: true);
        return body is { } found ? LnbitsAnswers.Outgoing(found) : OutgoingPaymentStatus.Unknown;
    }

    public async Task<LightningPayment> PayAsync(string bolt11, string paymentHash, long expectedAmountSats, CancellationToken cancellationToken)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(expectedAmountSats, 1);
        var body = await SendAsync(HttpMethod.Post, PaymentsPath, _options.AdminKey!,
            new { @out = true, bolt11 }, "pay the invoice", cancellationToken);
        var payment = LnbitsAnswers.Payment(body!.Value, expectedAmountSats);
        if (payment.AmountSats != expectedAmountSats) LogAmountDiffers(_logger, payment.PaymentHash, expectedAmountSats, payment.AmountSats);
        return payment;
    }

    /// <summary>
    /// One request with <paramref name="key"/>, answered with the JSON body of a 2xx; anything else is a
    /// <see cref="LightningException"/> that names <paramref name="action"/>. A cancelled <paramref name="cancellationToken"/>
    /// stays an <see cref="OperationCanceledException"/>. With <paramref name="notFoundIsNull"/> a 404 answers null.
    /// </summary>
    private async Task<JsonElement?> SendAsync(
        HttpMethod method, string path, string key, object? content, string action, CancellationToken cancellationToken, bool notFoundIsNull = false)
    {
        using var timeout = new CancellationTokenSource(_options.RequestTimeout, _time);
        using var linked = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken, timeout.Token);
        using var request = new HttpRequestMessage(method, new Uri(_baseAddress, path));
        request.Headers.Add("X-Api-Key", key);
        if (content is not null) request.Content = JsonContent.Create(content);
        try
        {
            using var response = await _httpClients.CreateClient(HttpClientName).SendAsync(request, linked.Token);
            var text = await response.Content.ReadAsStringAsync(linked.Token);
            if (notFoundIsNull && response.StatusCode == HttpStatusCode.NotFound) return null;
            if (!response.IsSuccessStatusCode) throw Refused(action, response.StatusCode, text);
            using var document = JsonDocument.Parse(text);
            return document.RootElement.Clone();
        }
        catch (OperationCanceledException exception) when (!cancellationToken.IsCancellationRequested)
        {
            LogTimedOut(_logger, action, _options.RequestTimeout.TotalSeconds, _baseAddress.Authority);
            throw new LightningException(
                $"The Lightning node did not answer within {_options.RequestTimeout.TotalSeconds.ToString(CultureInfo.InvariantCulture)} s.", exception);
        }
        catch (HttpRequestException exception)
        {
            LogUnreachable(_logger, action, _baseAddress.Authority, exception);
            throw new LightningException("The Lightning node is not reachable.", exception);
        }
        catch (JsonException exception)
        {
            LogMalformed(_logger, action, _baseAddress.Authority, exception);
            throw LnbitsAnswers.Malformed("the body is not JSON", exception);
        }
    }

    private LightningException Refused(string action, HttpStatusCode status, string body)
    {
        var code = (int)status;
        var detail = LnbitsAnswers.Detail(body);
        LogRefused(_logger, action, code, detail);
        var reason = status is HttpStatusCode.Unauthorized or HttpStatusCode.Forbidden
            ? "it refused the wallet key configured for this"
            : detail ?? "it answered an error";
        return new LightningException($"The Lightning node could not {action}: {reason} (HTTP {code.ToString(CultureInfo.InvariantCulture)}).",
            nodeAnswered: true);
    }

    [LoggerMessage(Level = LogLevel.Warning, Message = "LNbits at {Authority} did not answer in {Seconds} s when asked to {Action}")]
    private static partial void LogTimedOut(ILogger logger, string action, double seconds, string authority);

    [LoggerMessage(Level = LogLevel.Warning, Message = "LNbits at {Authority} is not reachable to {Action}")]
    private static partial void LogUnreachable(ILogger logger, string action, string authority, Exception exception);

    [LoggerMessage(Level = LogLevel.Warning, Message = "LNbits at {Authority} answered a body that is not JSON when asked to {Action}")]
    private static partial void LogMalformed(ILogger logger, string action, string authority, Exception exception);

    [LoggerMessage(Level = LogLevel.Warning, Message = "LNbits refused to {Action}: HTTP {Status}, {Detail}")]
    private static partial void LogRefused(ILogger logger, string action, int status, string? detail);

    [LoggerMessage(Level = LogLevel.Warning, Message = "LNbits paid {PaymentHash} for {ActualSats} sats where {ExpectedSats} were expected")]
    private static partial void LogAmountDiffers(ILogger logger, string paymentHash, long expectedSats, long actualSats);
}

using System.ComponentModel.DataAnnotations;

namespace Coordinator.Grains.Lightning.Payments;

/// <summary>
/// The Lightning node, bound from the <c>Lightning</c> configuration section. With no <see cref="LnbitsUrl"/> the grid runs
/// the stub (<see cref="StubLightningNode"/>): invoices that only the development route can pay.
/// </summary>
public sealed class LightningOptions : IValidatableObject
{
    public const string Section = "Lightning";

    /// <summary>The LNbits instance's base address (e.g. <c>https://lnbits.example.com</c>). Unset or empty: stub mode.</summary>
    public string? LnbitsUrl { get; set; }

    /// <summary>The LNbits wallet's invoice/read key: creates and checks invoices. Required with <see cref="LnbitsUrl"/>.</summary>
    public string? InvoiceKey { get; set; }

    /// <summary>The same wallet's admin key: pays refunds. Required with <see cref="LnbitsUrl"/>.</summary>
    public string? AdminKey { get; set; }

    /// <summary>How long one LNbits request may take, paying included. Default: 10 s.</summary>
    public TimeSpan RequestTimeout { get; set; } = TimeSpan.FromSeconds(10);

    /// <summary>Stub mode: no LNbits is configured.</summary>
    public bool IsStub => string.IsNullOrWhiteSpace(LnbitsUrl);

    /// <summary>The settings that are wrong together; checked at start-up.</summary>
    public IEnumerable<ValidationResult> Validate(ValidationContext validationContext)
    {
        if (RequestTimeout <= TimeSpan.Zero)
        {
            yield return new ValidationResult($"Lightning:RequestTimeout ({RequestTimeout}) must be positive.", [nameof(RequestTimeout)]);
        }
        if (IsStub) yield break;
        if (!Uri.TryCreate(LnbitsUrl, UriKind.Absolute, out var url) || (url.Scheme != Uri.UriSchemeHttp && url.Scheme != Uri.UriSchemeHttps))
        {
            yield return new ValidationResult(
                "Lightning:LnbitsUrl must be an absolute http(s) address such as https://lnbits.example.com, or empty for stub mode.", [nameof(LnbitsUrl)]);
        }
        if (string.IsNullOrWhiteSpace(InvoiceKey) || string.IsNullOrWhiteSpace(AdminKey))
        {
            yield return new ValidationResult(
                "Lightning:LnbitsUrl is set, so Lightning:InvoiceKey and Lightning:AdminKey are required: the LNbits wallet's invoice/read key " +
                "and admin key (LNbits shows both under the wallet's \"API info\"). Or clear Lightning:LnbitsUrl for stub mode.",
                [nameof(InvoiceKey), nameof(AdminKey)]);
        }
    }
}

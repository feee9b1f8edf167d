using System.Text.Json;
using Coordinator.Grains.Billing;

namespace Coordinator.Tests.Billing;

/// <summary>Our verifier against headers made by Stripe's own library (stripe-webhook-vectors.json, see tests/tools/make-stripe-vectors.js).</summary>
public class StripeSignatureTests
{
    private static readonly TimeSpan Tolerance = TimeSpan.FromMinutes(5);

    public static TheoryData<string, string, long, string> Vectors()
    {
        var path = Path.Combine(AppContext.BaseDirectory, "Billing", "stripe-webhook-vectors.json");
        var data = new TheoryData<string, string, long, string>();
        foreach (var vector in JsonDocument.Parse(File.ReadAllText(path)).RootElement.GetProperty("vectors").EnumerateArray())
        {
            data.Add(vector.GetProperty("secret").GetString()!, vector.GetProperty("payload").GetString()!,
                vector.GetProperty("timestamp").GetInt64(), vector.GetProperty("header").GetString()!);
        }
        return data;
    }

    private static DateTimeOffset At(long timestamp, int plusSeconds = 0) => DateTimeOffset.FromUnixTimeSeconds(timestamp + plusSeconds);

    [Theory]
    [MemberData(nameof(Vectors))]
    public void StripesOwnHeaders_Verify(string secret, string payload, long timestamp, string header)
    {
        Assert.Equal(SignatureCheck.Valid, StripeSignature.Verify(header, payload, secret, At(timestamp, 10), Tolerance));
        Assert.Equal(header, StripeSignature.Sign(payload, secret, At(timestamp)));
    }

    [Theory]
    [MemberData(nameof(Vectors))]
    public void AnyChange_OrAnOldTimestamp_IsRefused(string secret, string payload, long timestamp, string header)
    {
        Assert.Equal(SignatureCheck.Mismatch, StripeSignature.Verify(header, payload + " ", secret, At(timestamp), Tolerance));
        Assert.Equal(SignatureCheck.Mismatch, StripeSignature.Verify(header, payload, secret + "x", At(timestamp), Tolerance));
        Assert.Equal(SignatureCheck.Valid, StripeSignature.Verify(header, payload, secret, At(timestamp, 299), Tolerance));
        Assert.Equal(SignatureCheck.Stale, StripeSignature.Verify(header, payload, secret, At(timestamp, 301), Tolerance));
    }

    [Theory]
    [MemberData(nameof(Vectors))]
    public void SeveralV1Values_AnyOneMatchingIsEnough(string secret, string payload, long timestamp, string header)
    {
        var v1 = header[(header.IndexOf("v1=", StringComparison.Ordinal) + 3)..];
        var rolled = $"t={timestamp},v1={new string('0', 64)},v0={new string('1', 64)},v1={v1}";
        Assert.Equal(SignatureCheck.Valid, StripeSignature.Verify(rolled, payload, secret, At(timestamp), Tolerance));
    }

    [Theory]
    [InlineData(null)]
    [InlineData("")]
    [InlineData("v1=abc")]
    [InlineData("t=1767225600")]
    [InlineData("t=1767225600,v0=0000000000000000000000000000000000000000000000000000000000000000")]
    [InlineData("t=yesterday,v1=0000000000000000000000000000000000000000000000000000000000000000")]
    public void MalformedHeaders_AreRefused(string? header) =>
        Assert.Equal(SignatureCheck.Malformed, StripeSignature.Verify(header, "{}", "whsec_x", At(1767225600), Tolerance));
}

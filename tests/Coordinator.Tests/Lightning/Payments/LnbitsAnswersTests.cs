using System.Text.Json;
using Coordinator.Grains.Lightning.Payments;

namespace Coordinator.Tests.Lightning.Payments;

/// <summary>Bodies the fake does not send: what the client makes of LNbits answers that lack what it needs.</summary>
public sealed class LnbitsAnswersTests
{
    [Theory]
    [InlineData("""{"payment_request":"lnbcrt1"}""")]
    [InlineData("""{"payment_hash":"ab"}""")]
    [InlineData("""{"payment_hash":"","payment_request":"lnbcrt1"}""")]
    [InlineData("""[]""")]
    public void AnInvoiceAnswerWithoutHashOrRequest_IsALightningException(string body)
    {
        var error = Assert.Throws<LightningException>(() => LnbitsAnswers.Invoice(Parse(body), 10));
        Assert.Contains("not LNbits' API", error.Message);
    }

    [Fact]
    public void AnInvoiceAnswer_TakesBolt11_WhenPaymentRequestIsAbsent()
    {
        var invoice = LnbitsAnswers.Invoice(Parse("""{"payment_hash":"ab","bolt11":"lnbcrt100n1x"}"""), 10);
        Assert.Equal(new LightningInvoice("ab", "lnbcrt100n1x", 10), invoice);
    }

    [Theory]
    [InlineData("""{"paid":"yes"}""")]
    [InlineData("""{"status":"success"}""")]
    [InlineData("""null""")]
    public void AStatusWithoutABooleanPaid_IsALightningException(string body) =>
        Assert.Throws<LightningException>(() => LnbitsAnswers.Paid(Parse(body)));

    [Fact]
    public void APaymentLnbitsReportsFailed_IsALightningException() =>
        Assert.Throws<LightningException>(() => LnbitsAnswers.Payment(Parse("""{"payment_hash":"ab","status":"failed","amount":-5000}"""), 5));

    [Fact]
    public void APaymentAnswer_ReportsTheAmountLnbitsSent()
    {
        var payment = LnbitsAnswers.Payment(Parse("""{"payment_hash":"ab","status":"success","amount":-7000}"""), 5);
        Assert.Equal(new LightningPayment("ab", 7, IsPending: false), payment);
    }

    [Theory]
    [InlineData("""{"detail":"Insufficient balance."}""", "Insufficient balance.")]
    [InlineData("""{"detail":[{"loc":["body","amount"],"msg":"field required","type":"value_error.missing"}]}""", "field required")]
    [InlineData("""{"message":"Failed to decode"}""", "Failed to decode")]
    [InlineData("""<html>Bad Gateway</html>""", null)]
    public void AnErrorAnswer_SaysWhatLnbitsSaid(string body, string? detail) => Assert.Equal(detail, LnbitsAnswers.Detail(body));

    [Fact]
    public void ALongErrorDetail_IsCutShort() =>
        Assert.Equal(201, LnbitsAnswers.Detail(JsonSerializer.Serialize(new { detail = new string('x', 5000) }))!.Length);

    private static JsonElement Parse(string json)
    {
        using var document = JsonDocument.Parse(json);
        return document.RootElement.Clone();
    }
}

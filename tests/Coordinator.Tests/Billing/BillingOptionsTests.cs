using System.ComponentModel.DataAnnotations;
using Coordinator.Grains.Billing;

namespace Coordinator.Tests.Billing;

public class BillingOptionsTests
{
    private static List<ValidationResult> Validate(BillingOptions options)
    {
        var results = new List<ValidationResult>();
        Validator.TryValidateObject(options, new ValidationContext(options), results, validateAllProperties: true);
        return results;
    }

    [Theory]
    [InlineData("sk_test_abc\n")]
    [InlineData(" sk_test_abc")]
    [InlineData("sk_test_a bc")]
    public void ASecretKeyWithWhitespace_IsRefused(string secretKey) =>
        Assert.Contains(Validate(new BillingOptions { SecretKey = secretKey }), r => r.MemberNames.Contains(nameof(BillingOptions.SecretKey)));

    [Theory]
    [InlineData(null)]
    [InlineData("")]
    [InlineData("sk_test_abc")]
    public void NoKey_OrAPlainOne_IsAccepted(string? secretKey) =>
        Assert.Empty(Validate(new BillingOptions { SecretKey = secretKey }));
}

using System.Globalization;
using System.Text.Json;

namespace Coordinator.Grains.Lightning.Pricing;

/// <summary>Reads a price source's body: CoinGecko's simple price or Coinbase's spot price (see <see cref="BtcPriceOptions"/>).</summary>
internal static class BtcPriceAnswers
{
    /// <summary>The positive price in the body, or null when the body is neither shape or its price is not positive.</summary>
    public static decimal? Usd(string body)
    {
        try
        {
            using var document = JsonDocument.Parse(body);
            var root = document.RootElement;
            if (root.ValueKind != JsonValueKind.Object) return null;
            var usd = root.TryGetProperty("bitcoin", out var coinGecko) ? CoinGecko(coinGecko)
                : root.TryGetProperty("data", out var coinbase) ? Coinbase(coinbase)
                : null;
            return usd > 0 ? usd : null;
        }
        catch (JsonException)
        {
            return null;
        }
    }

    // {"bitcoin": {"usd": 67123.45}}
    private static decimal? CoinGecko(JsonElement bitcoin) =>
        bitcoin.ValueKind == JsonValueKind.Object && bitcoin.TryGetProperty("usd", out var usd)
            && usd.ValueKind == JsonValueKind.Number && usd.TryGetDecimal(out var price)
            ? price
            : null;

    // {"data": {"amount": "67123.45", "base": "BTC", "currency": "USD"}}: the amount is a string; a pair other than BTC-USD is no price of ours.
    private static decimal? Coinbase(JsonElement data)
    {
        if (data.ValueKind != JsonValueKind.Object || !data.TryGetProperty("amount", out var amount) || amount.ValueKind != JsonValueKind.String) return null;
        if (!IsAbsentOr(data, "currency", "USD") || !IsAbsentOr(data, "base", "BTC")) return null;
        return decimal.TryParse(amount.GetString(), NumberStyles.AllowDecimalPoint, CultureInfo.InvariantCulture, out var price) ? price : null;
    }

    private static bool IsAbsentOr(JsonElement data, string name, string expected) =>
        !data.TryGetProperty(name, out var value) || (value.ValueKind == JsonValueKind.String && value.GetString() == expected);
}

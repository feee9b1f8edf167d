using System.Globalization;

namespace Coordinator.Grains.Lightning.Bolt11;

/// <summary>
/// The amount in an invoice's human-readable part: a positive decimal number of bitcoin with no leading zeros,
/// optionally followed by a multiplier (<c>m</c> 10⁻³, <c>u</c> 10⁻⁶, <c>n</c> 10⁻⁹, <c>p</c> 10⁻¹²). One millisatoshi
/// is 10 pico-bitcoin, so a <c>p</c> amount must end in 0.
/// </summary>
internal static class Bolt11Amount
{
    /// <summary>All the bitcoin there will ever be, in millisatoshis: no invoice can ask for more.</summary>
    public const long MaxMsat = 21_000_000L * 100_000_000 * 1000;

    private const long PicoPerMsat = 10;

    // Pico-bitcoin per unit, largest first: the encoder uses the first that divides the amount (the shortest form).
    private static readonly (char Multiplier, long PicoPerUnit)[] Units =
    [
        ('\0', 1_000_000_000_000), ('m', 1_000_000_000), ('u', 1_000_000), ('n', 1_000), ('p', 1),
    ];

    /// <summary>Reads an amount; empty text is no amount (null).</summary>
    public static bool TryParse(ReadOnlySpan<char> text, out long? amountMsat)
    {
        amountMsat = null;
        if (text.IsEmpty) return true;

        var picoPerUnit = Units[0].PicoPerUnit;
        var digits = text;
        if (!char.IsAsciiDigit(text[^1]))
        {
            var multiplier = text[^1];
            var unit = Array.FindIndex(Units, u => u.Multiplier == multiplier);
            if (unit < 0) return false;
            picoPerUnit = Units[unit].PicoPerUnit;
            digits = text[..^1];
        }
        // 20 digits already exceed every bitcoin there is, in any unit; the bound keeps the arithmetic in range.
        if (digits.IsEmpty || digits.Length > 20 || digits[0] == '0') return false;
        UInt128 value = 0;
        foreach (var digit in digits)
        {
            if (!char.IsAsciiDigit(digit)) return false;
            value = value * 10 + (uint)(digit - '0');
        }

        var pico = value * (ulong)picoPerUnit;
        if (pico % PicoPerMsat != 0 || pico / PicoPerMsat > MaxMsat) return false;
        amountMsat = (long)(pico / PicoPerMsat);
        return true;
    }

    /// <summary>The shortest text for an amount: the largest multiplier that divides it exactly.</summary>
    public static string Format(long amountMsat)
    {
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(amountMsat);
        ArgumentOutOfRangeException.ThrowIfGreaterThan(amountMsat, MaxMsat);
        var pico = (UInt128)amountMsat * PicoPerMsat;
        var (multiplier, picoPerUnit) = Units.First(u => pico % (ulong)u.PicoPerUnit == 0);
        var number = (pico / (ulong)picoPerUnit).ToString(CultureInfo.InvariantCulture);
        return multiplier == '\0' ? number : number + multiplier;
    }
}

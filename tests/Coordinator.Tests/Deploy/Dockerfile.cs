using System.Text.RegularExpressions;

namespace Coordinator.Tests.Deploy;

/// <summary>
/// Just enough of a Dockerfile reader for the tests: stages with their instructions (continuation lines joined,
/// comments dropped, global ARG defaults substituted) and the ENV of a stage. The syntax itself is checked by
/// dockerfile-utils (<see cref="DockerfileTests"/>).
/// </summary>
internal sealed partial class Dockerfile
{
    private Dockerfile(IReadOnlyList<Stage> stages) => Stages = stages;

    public IReadOnlyList<Stage> Stages { get; }

    public Stage this[string name] => Stages.Single(s => s.Name == name);

    public static Dockerfile Read(string path)
    {
        var arguments = new Dictionary<string, string>();
        var stages = new List<Stage>();
        foreach (var line in LogicalLines(File.ReadAllLines(path)))
        {
            var space = line.IndexOf(' ', StringComparison.Ordinal);
            var keyword = (space < 0 ? line : line[..space]).ToUpperInvariant();
            var rest = space < 0 ? "" : Substitute(line[(space + 1)..].Trim(), arguments);
            if (keyword == "ARG" && stages.Count == 0)
            {
                var (name, value) = Split(rest);
                arguments[name] = value;
            }
            else if (keyword == "FROM")
            {
                var parts = rest.Split(' ', StringSplitOptions.RemoveEmptyEntries);
                stages.Add(new Stage(parts.Length >= 3 && parts[1].Equals("AS", StringComparison.OrdinalIgnoreCase) ? parts[2] : $"stage{stages.Count}", parts[0]));
            }
            else
            {
                Assert.True(stages.Count > 0, $"{keyword} before the first FROM in {path}");
                stages[^1].Instructions.Add((keyword, rest));
            }
        }
        return new Dockerfile(stages);
    }

    /// <summary>A stage: its name, its base, its instructions in order.</summary>
    public sealed class Stage(string name, string from)
    {
        public string Name { get; } = name;

        public string From { get; } = from;

        public List<(string Keyword, string Arguments)> Instructions { get; } = [];

        public IEnumerable<string> All(string keyword) => Instructions.Where(i => i.Keyword == keyword).Select(i => i.Arguments);

        /// <summary>The variables its ENV instructions set (<c>KEY=VALUE</c> pairs; a value may be empty).</summary>
        public IReadOnlyDictionary<string, string> Environment =>
            All("ENV").SelectMany(arguments => EnvPair().Matches(arguments)).ToDictionary(m => m.Groups[1].Value, m => m.Groups[2].Value);
    }

    // Continuation lines end in a backslash; comment lines may sit among them.
    private static IEnumerable<string> LogicalLines(IEnumerable<string> lines)
    {
        var current = "";
        foreach (var raw in lines)
        {
            var line = raw.Trim();
            if (line.Length == 0 || line.StartsWith('#')) continue;
            if (line.EndsWith('\\'))
            {
                current += line[..^1].TrimEnd() + " ";
                continue;
            }
            yield return current + line;
            current = "";
        }
        if (current.Length > 0) yield return current.TrimEnd();
    }

    private static (string Name, string Value) Split(string argument)
    {
        var equals = argument.IndexOf('=', StringComparison.Ordinal);
        return equals < 0 ? (argument, "") : (argument[..equals], argument[(equals + 1)..]);
    }

    private static string Substitute(string text, Dictionary<string, string> arguments) =>
        ArgumentReference().Replace(text, m => arguments.TryGetValue(m.Groups[1].Value, out var value) ? value : m.Value);

    [GeneratedRegex(@"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")]
    private static partial Regex ArgumentReference();

    [GeneratedRegex(@"([A-Za-z_][A-Za-z0-9_]*)=(\S*)")]
    private static partial Regex EnvPair();
}

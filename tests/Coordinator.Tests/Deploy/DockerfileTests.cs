using System.Xml.Linq;

namespace Coordinator.Tests.Deploy;

/// <summary>
/// deploy/Dockerfile without a Docker engine: dockerfile-utils' validator, then what an image build would find out
/// late (a path it copies that is missing, a project the restore layer forgets) and what the issue asks of the image.
/// </summary>
public sealed class DockerfileTests
{
    private static readonly string DockerfilePath = DeployFiles.PathOf("deploy/Dockerfile");

    [Fact]
    public async Task Dockerfile_PassesTheDockerfileValidator()
    {
        var result = Assert.Single((await DeployFiles.ValidateAsync("dockerfile", DockerfilePath)).EnumerateArray());

        Assert.True(result.GetProperty("errors").GetArrayLength() == 0, result.GetProperty("errors").ToString());
    }

    [Fact]
    public void SiloImage_IsAspNet10_RunAsNonRoot_ThroughTheEntrypointScript()
    {
        var dockerfile = Dockerfile.Read(DockerfilePath);
        var silo = dockerfile.Stages[^1];

        Assert.Equal("silo", silo.Name);
        Assert.Equal("mcr.microsoft.com/dotnet/aspnet:10.0", silo.From);
        var user = Assert.Single(silo.All("USER"));
        Assert.DoesNotContain(user, new[] { "root", "0", "0:0" });
        Assert.Equal("""["/usr/local/bin/coordinator-entrypoint"]""", Assert.Single(silo.All("ENTRYPOINT")));
        Assert.Contains(silo.All("COPY"), copy => copy.EndsWith("deploy/docker-entrypoint.sh /usr/local/bin/coordinator-entrypoint", StringComparison.Ordinal));
        Assert.True(File.Exists(DeployFiles.PathOf("deploy/docker-entrypoint.sh")));

        var ports = Assert.Single(silo.All("EXPOSE")).Split(' ');
        var env = silo.Environment;
        Assert.Equal(["3000", "8001", "11111", "30000"], ports);
        Assert.Equal([env["PORT"], env["Aitbc__Port"], env["Cluster__SiloPort"], env["Cluster__GatewayPort"]], ports);
    }

    [Fact]
    public void SiloIsPublished_InRelease_OnTheDotNet10Sdk()
    {
        var dockerfile = Dockerfile.Read(DockerfilePath);

        Assert.Equal("mcr.microsoft.com/dotnet/sdk:10.0", dockerfile["build"].From);
        var publish = Assert.Single(dockerfile["publish-silo"].All("RUN"));
        Assert.StartsWith("dotnet publish Coordinator.Silo/Coordinator.Silo.csproj -c Release", publish, StringComparison.Ordinal);
        Assert.Contains(dockerfile["silo"].All("COPY"), copy => copy.StartsWith("--from=publish-silo ", StringComparison.Ordinal));
    }

    [Fact]
    public void RestoreLayer_CopiesEveryProjectTheImagesBuild_BeforeRestoring()
    {
        var build = Dockerfile.Read(DockerfilePath)["build"];
        var restoreAt = build.Instructions.FindIndex(i => i.Keyword == "RUN" && i.Arguments.StartsWith("dotnet restore", StringComparison.Ordinal));
        var copiedBefore = build.Instructions.Take(restoreAt).Where(i => i.Keyword == "COPY")
            .SelectMany(i => i.Arguments.Split(' ', StringSplitOptions.RemoveEmptyEntries)[..^1]).ToHashSet();

        foreach (var project in ProjectsOf("Coordinator.Silo/Coordinator.Silo.csproj").Concat(ProjectsOf("GridWorker/GridWorker.csproj")))
        {
            Assert.Contains(project, copiedBefore);
        }
        Assert.Superset(new HashSet<string> { "Directory.Build.props", "Directory.Packages.props", ".editorconfig" }, copiedBefore);
    }

    [Fact]
    public void EveryPathCopiedFromTheContext_Exists_AndIsNotIgnored()
    {
        var ignored = File.ReadAllLines(DeployFiles.PathOf(".dockerignore"))
            .Where(l => l.Length > 0 && !l.StartsWith('#')).Select(l => l.TrimEnd('/')).ToList();

        foreach (var stage in Dockerfile.Read(DockerfilePath).Stages)
        {
            foreach (var copy in stage.All("COPY").Where(c => !c.StartsWith("--from=", StringComparison.Ordinal)))
            {
                var words = copy.Split(' ', StringSplitOptions.RemoveEmptyEntries).Where(w => !w.StartsWith("--", StringComparison.Ordinal)).ToList();
                foreach (var source in words[..^1])
                {
                    Assert.True(File.Exists(DeployFiles.PathOf(source)) || Directory.Exists(DeployFiles.PathOf(source)), $"{stage.Name} copies {source}, which is not in the repository");
                    Assert.DoesNotContain(source.TrimEnd('/'), ignored);
                }
            }
        }
    }

    /// <summary>The project and every project it references, transitively, as paths from the repository root.</summary>
    private static HashSet<string> ProjectsOf(string project)
    {
        var seen = new HashSet<string>();
        var pending = new Stack<string>([project]);
        while (pending.TryPop(out var next))
        {
            if (!seen.Add(next)) continue;
            var directory = Path.GetDirectoryName(next)!;
            foreach (var reference in XDocument.Load(DeployFiles.PathOf(next)).Descendants("ProjectReference"))
            {
                var full = Path.GetFullPath(Path.Combine(DeployFiles.Root, directory, reference.Attribute("Include")!.Value));
                pending.Push(Path.GetRelativePath(DeployFiles.Root, full).Replace('\\', '/'));
            }
        }
        return seen;
    }
}

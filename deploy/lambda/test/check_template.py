#!/usr/bin/env python3
"""Static checks of deploy/lambda/template.yaml (no AWS access needed).

Every Ref, GetAtt, Sub variable, DependsOn and Condition must name something
that exists (parameters, resources, pseudo parameters, or what the SAM
transform generates for AutoPublishAlias); each handler must be exported by
src/index.mjs; there must be exactly one BUFFERED and one RESPONSE_STREAM
Function URL, each on the alias its function publishes. Exits non-zero with
one line per problem.
"""
import pathlib
import re
import sys

import yaml

HERE = pathlib.Path(__file__).resolve().parent
TEMPLATE = HERE.parent / "template.yaml"
INDEX = HERE.parent / "src" / "index.mjs"
PSEUDO = {"AWS::Region", "AWS::AccountId", "AWS::Partition", "AWS::NoValue",
          "AWS::StackName", "AWS::StackId", "AWS::URLSuffix"}


class Tag:
    def __init__(self, tag, value):
        self.tag, self.value = tag, value


def construct_tag(loader, suffix, node):
    if isinstance(node, yaml.ScalarNode):
        value = loader.construct_scalar(node)
    elif isinstance(node, yaml.SequenceNode):
        value = loader.construct_sequence(node, deep=True)
    else:
        value = loader.construct_mapping(node, deep=True)
    return Tag(suffix, value)


class Loader(yaml.SafeLoader):
    pass


Loader.add_multi_constructor("!", construct_tag)


def walk(node, visit):
    visit(node)
    if isinstance(node, Tag):
        walk(node.value, visit)
    elif isinstance(node, dict):
        for v in node.values():
            walk(v, visit)
    elif isinstance(node, list):
        for v in node:
            walk(v, visit)


def main():
    doc = yaml.load(TEMPLATE.read_text(), Loader=Loader)
    problems = []
    params = set(doc.get("Parameters", {}))
    resources = doc["Resources"]
    conditions = set(doc.get("Conditions", {}))

    names = set(resources)
    attr_refs = set()  # "Logical.Attr" forms SAM accepts in Ref.
    aliases = {}
    for rid, res in resources.items():
        if res["Type"] == "AWS::Serverless::Function":
            alias = res["Properties"].get("AutoPublishAlias")
            if alias:
                aliases[rid] = alias
                names.add(f"{rid}Alias{alias}")
                attr_refs.update({f"{rid}.Alias", f"{rid}.Version"})
    refable = params | names | PSEUDO | attr_refs

    def visit(node):
        if isinstance(node, Tag):
            if node.tag == "Ref" and node.value not in refable:
                problems.append(f"!Ref {node.value}: no such parameter or resource")
            if node.tag == "GetAtt":
                target = (node.value.split(".")[0] if isinstance(node.value, str)
                          else node.value[0])
                if target not in names:
                    problems.append(f"!GetAtt {node.value}: no such resource")
            if node.tag == "Sub":
                text = node.value if isinstance(node.value, str) else node.value[0]
                for var in re.findall(r"\$\{([^!}][^}]*)\}", text):
                    if var.split(".")[0] not in refable:
                        problems.append(f"!Sub ${{{var}}}: no such parameter or resource")
            if node.tag in ("If", "Condition"):
                cond = node.value[0] if node.tag == "If" else node.value
                if cond not in conditions:
                    problems.append(f"!{node.tag} {cond}: no such condition")

    walk(doc, visit)
    for rid, res in resources.items():
        deps = res.get("DependsOn", [])
        for dep in [deps] if isinstance(deps, str) else deps:
            if dep not in names:
                problems.append(f"{rid}: DependsOn {dep}: no such resource")
        if "Condition" in res and res["Condition"] not in conditions:
            problems.append(f"{rid}: Condition {res['Condition']}: no such condition")

    exported = set(re.findall(r"^export const (\w+)", INDEX.read_text(), re.M))
    for rid, res in resources.items():
        if res["Type"] == "AWS::Serverless::Function":
            module, _, name = res["Properties"]["Handler"].partition(".")
            if module != "index" or name not in exported:
                problems.append(f"{rid}: handler {res['Properties']['Handler']} "
                                f"is not exported by src/index.mjs")

    modes = {}
    for rid, res in resources.items():
        if res["Type"] != "AWS::Lambda::Url":
            continue
        props = res["Properties"]
        modes.setdefault(props["InvokeMode"], []).append(rid)
        fn = props["TargetFunctionArn"].value
        if aliases.get(fn) != props.get("Qualifier"):
            problems.append(f"{rid}: Qualifier {props.get('Qualifier')} is not "
                            f"the alias {aliases.get(fn)} published by {fn}")
        if res.get("DependsOn") != f"{fn}Alias{aliases.get(fn)}":
            problems.append(f"{rid}: must DependsOn {fn}Alias{aliases.get(fn)}")
    if sorted(modes) != ["BUFFERED", "RESPONSE_STREAM"] or any(
            len(v) != 1 for v in modes.values()):
        problems.append(f"want one BUFFERED and one RESPONSE_STREAM URL, got {modes}")
    if set(aliases.values()) != {"buffered", "stream"}:
        problems.append(f"want aliases buffered and stream, got {aliases}")

    for p in problems:
        print(f"template.yaml: {p}")
    print(f"{0 if problems else 1} passed, {1 if problems else 0} failed")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())

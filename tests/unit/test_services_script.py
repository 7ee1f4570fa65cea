from scripts import services


def test_neo4j_passwords_never_look_like_an_option():
    # neo4j-admin refused a password starting with '-' (picocli read it as an option)
    assert not [p for p in (services.neo4j_password() for _ in range(2000)) if p.startswith("-")]

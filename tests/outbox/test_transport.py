"""SMTP transport against a real SMTP server on loopback."""

from __future__ import annotations

import shutil
import smtplib
import ssl
import subprocess
import time
from email.message import EmailMessage
from pathlib import Path

import pytest

from nudger.outbox.transport import open_transport
from nudger.outbox.transport.base import PermanentSendError, TransientSendError
from nudger.outbox.transport.smtp import SMTPTransport
from tests.smtpd import SmtpSink


def mail(n: int = 1, to: str = "maya@example.com") -> EmailMessage:
    msg = EmailMessage()
    msg["From"] = "Nudger <nudger@example.org>"
    msg["To"] = to
    msg["Subject"] = f"Message {n}"
    msg["Message-ID"] = f"<nudger.{n}.test@example.org>"
    msg.set_content(f"Body {n}\n")
    return msg


def wait_for(predicate, seconds: float = 5.0) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.01)
    return predicate()


@pytest.fixture(params=[False, True], ids=["serial", "pipelining"])
def sink(request):
    # Every test runs against a server with and without RFC 2920 PIPELINING:
    # the transport sends the two ways, and must fail and recover alike.
    with SmtpSink(pipelining=request.param) as server:
        yield server


def test_several_messages_share_one_connection(sink):
    with open_transport(sink.url()) as transport:
        for n in range(1, 6):
            transport.send(mail(n))

    assert sink.connections == 1
    assert [r.message["Subject"] for r in sink.messages] == [f"Message {n}" for n in range(1, 6)]
    assert sink.messages[0].mail_from == "nudger@example.org"
    assert sink.messages[0].rcpt_tos == ["maya@example.com"]


def test_connection_is_opened_lazily_and_closed_on_exit(sink):
    with open_transport(sink.url()) as transport:
        assert sink.connections == 0
        transport.send(mail())
        assert sink.open_connections == 1

    assert wait_for(lambda: sink.open_connections == 0)


def test_421_is_transient_and_the_next_message_reconnects(sink):
    sink.fail_next(1, 421, "4.3.2 Service shutting down", stage="MAIL")
    with open_transport(sink.url()) as transport:
        with pytest.raises(TransientSendError) as failure:
            transport.send(mail(1))
        transport.send(mail(2))

    assert failure.value.code == 421
    assert "Service shutting down" in failure.value.detail
    assert [r.message["Subject"] for r in sink.messages] == ["Message 2"]
    assert sink.connections == 2


def test_450_recipient_is_transient_and_the_connection_is_kept(sink):
    sink.fail_next(1, 450, "4.2.1 Mailbox busy", stage="RCPT")
    with open_transport(sink.url()) as transport:
        with pytest.raises(TransientSendError) as failure:
            transport.send(mail(1))
        transport.send(mail(2))

    assert failure.value.code == 450
    assert "Mailbox busy" in failure.value.detail
    assert sink.connections == 1
    assert len(sink.messages) == 1


def test_550_recipient_is_permanent_with_the_server_answer(sink):
    sink.fail_next(1, 550, "5.1.1 No such user here", stage="RCPT")
    with open_transport(sink.url()) as transport:
        with pytest.raises(PermanentSendError) as failure:
            transport.send(mail(1, to="nobody@example.com"))
        transport.send(mail(2))

    assert failure.value.code == 550
    assert "5.1.1 No such user here" in failure.value.detail
    assert "nobody@example.com" in failure.value.detail
    assert sink.connections == 1
    assert [r.message["Subject"] for r in sink.messages] == ["Message 2"]


def test_554_after_data_is_permanent_and_the_connection_is_kept(sink):
    sink.fail_next(1, 554, "5.7.1 Message rejected as spam", stage="DATA")
    with open_transport(sink.url()) as transport:
        with pytest.raises(PermanentSendError) as failure:
            transport.send(mail(1))
        transport.send(mail(2))

    assert failure.value.code == 554
    assert failure.value.detail == "5.7.1 Message rejected as spam"
    assert sink.connections == 1
    assert [r.message["Subject"] for r in sink.messages] == ["Message 2"]


def test_451_after_data_is_transient(sink):
    sink.fail_next(1, 451, "4.3.0 Local error, try later", stage="DATA")
    with open_transport(sink.url()) as transport, pytest.raises(TransientSendError) as failure:
        transport.send(mail(1))

    assert failure.value.code == 451


def test_reconnects_once_when_the_server_closed_an_idle_connection(sink):
    with open_transport(sink.url()) as transport:
        transport.send(mail(1))
        sink.disconnect_all()
        assert wait_for(lambda: sink.open_connections == 0)
        transport.send(mail(2))

    assert sink.connections == 2
    assert [r.message["Subject"] for r in sink.messages] == ["Message 1", "Message 2"]
    assert [r.connection for r in sink.messages] == [1, 2]


def test_reconnects_once_when_the_server_hangs_up_mid_message(sink):
    with open_transport(sink.url()) as transport:
        transport.send(mail(1))
        sink.drop_next(1, stage="MAIL")
        transport.send(mail(2))

    assert sink.connections == 2
    assert [r.message["Subject"] for r in sink.messages] == ["Message 1", "Message 2"]


def test_gives_up_when_the_server_keeps_hanging_up(sink):
    with open_transport(sink.url()) as transport:
        transport.send(mail(1))
        sink.drop_next(2, stage="MAIL")
        with pytest.raises(TransientSendError) as failure:
            transport.send(mail(2))
        transport.send(mail(3))

    assert failure.value.code is None
    assert sink.connections == 3
    assert [r.message["Subject"] for r in sink.messages] == ["Message 1", "Message 3"]


def test_hang_up_on_a_fresh_connection_is_transient(sink):
    sink.drop_next(1, stage="DATA")
    with open_transport(sink.url()) as transport, pytest.raises(TransientSendError):
        transport.send(mail(1))

    assert sink.connections == 1
    assert sink.messages == []


def test_connection_refused_is_transient():
    with SmtpSink() as gone:
        url = gone.url()
    with open_transport(url, timeout=2) as transport, pytest.raises(TransientSendError) as failure:
        transport.send(mail())

    assert failure.value.code is None
    assert "cannot connect" in failure.value.detail


def test_start_returns_before_the_answer_which_the_next_message_reads(sink):
    sink.fail_next(1, 554, "5.7.1 Message rejected as spam", stage="DATA")
    with open_transport(sink.url()) as transport:
        first = transport.start(mail(1))
        assert not first.settled  # written; the server's answer is not read yet
        second = transport.start(mail(2))
        # Without pipelining the second message reads it before its envelope;
        # with it, the second's envelope went with the first's content, and
        # the third reads both answers.
        assert first.settled is not sink.pipelining
        third = transport.start(mail(3))
        assert first.settled
        with pytest.raises(PermanentSendError) as failure:
            first.result()
        second.result()
        third.result()

    assert failure.value.code == 554
    assert [r.message["Subject"] for r in sink.messages] == ["Message 2", "Message 3"]
    assert sink.connections == 1


def test_a_hang_up_after_the_content_fails_that_message_and_the_next_reconnects(sink):
    sink.drop_next(1, stage="DATA", after=1)
    with open_transport(sink.url()) as transport:
        transport.send(mail(1))
        second = transport.start(mail(2))
        third = transport.start(mail(3))
        with pytest.raises(TransientSendError) as failure:
            second.result()  # sent or not, nobody can tell: it is tried again later
        third.result()

    assert failure.value.code is None
    assert [r.message["Subject"] for r in sink.messages] == ["Message 1", "Message 3"]
    assert sink.connections == 2


def test_closing_reads_the_last_answer(sink):
    sink.fail_next(1, 451, "4.3.0 Local error, try later", stage="DATA")
    with open_transport(sink.url()) as transport:
        last = transport.start(mail(1))
    with pytest.raises(TransientSendError):
        last.result()


@pytest.mark.parametrize("pipelining", [False, True])
def test_with_pipelining_a_message_takes_two_writes_instead_of_four(monkeypatch, pipelining):
    writes: list[bytes] = []
    real_send = smtplib.SMTP.send

    def counting_send(self, data):
        writes.append(data if isinstance(data, bytes) else data.encode())
        return real_send(self, data)

    with SmtpSink(pipelining=pipelining) as sink, open_transport(sink.url()) as transport:
        transport.send(mail(1))
        monkeypatch.setattr(smtplib.SMTP, "send", counting_send)
        transport.send(mail(2))
        monkeypatch.undo()  # not the QUIT

    assert len(sink.messages) == 2
    if pipelining:  # MAIL, RCPT and DATA together; then the content
        assert len(writes) == 2 and writes[0] == (
            b"MAIL FROM:<nudger@example.org>\r\nRCPT TO:<maya@example.com>\r\nDATA\r\n"
        )
    else:  # MAIL, RCPT, DATA, content, each after the answer to the one before
        assert len(writes) == 4


def test_lines_that_begin_with_a_dot_arrive_intact(sink):
    msg = mail(1)
    body = ".hidden\n..two dots\nplain\n.\nlast line\n"
    msg.set_content(body)
    with open_transport(sink.url()) as transport:
        transport.send(msg)

    assert sink.messages[0].message.get_content().replace("\r\n", "\n") == body


def test_a_message_with_no_recipient_is_refused_alone(sink):
    with open_transport(sink.url()) as transport:
        nobody = mail(1)
        del nobody["To"]
        with pytest.raises(PermanentSendError, match="no recipient"):
            transport.send(nobody)
        transport.send(mail(2))

    assert [r.message["Subject"] for r in sink.messages] == ["Message 2"]


def test_a_late_answer_to_a_bcc_message_is_not_sent_again():
    # Bcc goes through smtplib's send_message, which reports a timeout after
    # the content as a disconnect: sending again there could duplicate it.
    with SmtpSink() as sink, open_transport(f"{sink.url()}?timeout=0.3") as transport:
        transport.send(mail(1))
        sink.delay = 1.0  # the server takes the next one, then answers late
        late = mail(2)
        late["Bcc"] = "audit@example.com"
        with pytest.raises(TransientSendError):
            transport.send(late)

        assert sink.connections == 1  # no new connection to send it again


def test_credentials_in_the_url_are_decoded_and_used():
    with SmtpSink(credentials=("mailer@example.org", "p@ss:w/rd%")) as sink:
        url = sink.url(userinfo="mailer%40example.org:p%40ss%3Aw%2Frd%25")
        with open_transport(url) as transport:
            transport.send(mail())

    assert sink.logins == [("mailer@example.org", "p@ss:w/rd%")]
    assert len(sink.messages) == 1


def test_wrong_password_is_permanent():
    with (
        SmtpSink(credentials=("mailer", "right")) as sink,
        open_transport(sink.url(userinfo="mailer:wrong")) as transport,
        pytest.raises(PermanentSendError) as failure,
    ):
        transport.send(mail())

    assert failure.value.code == 535


def test_starttls_url_against_a_server_without_tls_is_permanent(sink):
    with (
        open_transport(sink.url("smtp+starttls")) as transport,
        pytest.raises(PermanentSendError, match="STARTTLS"),
    ):
        transport.send(mail())


def test_outbox_url_hands_messages_to_capture():
    captured: list[EmailMessage] = []
    with open_transport("outbox:", capture=captured.append) as transport:
        transport.send(mail(1))
        transport.send(mail(2))

    assert [m["Subject"] for m in captured] == ["Message 1", "Message 2"]


def test_outbox_url_without_capture_is_an_error():
    with pytest.raises(ValueError, match="capture"):
        open_transport("outbox:")


@pytest.mark.parametrize(
    ("url", "port"),
    [
        ("smtp://mail.example.org", 25),
        ("smtp+starttls://mail.example.org", 587),
        ("smtps://mail.example.org", 465),
        ("smtp://mail.example.org:2525", 2525),
    ],
)
def test_default_ports_follow_the_scheme(url, port):
    transport = open_transport(url)

    assert isinstance(transport, SMTPTransport)
    assert (transport.host, transport.port) == ("mail.example.org", port)


def test_timeout_and_helo_come_from_the_query():
    transport = open_transport("smtp://u:p@mail.example.org?timeout=7.5&helo=nudger.example.org")

    assert isinstance(transport, SMTPTransport)
    assert transport.timeout == 7.5
    assert transport.local_hostname == "nudger.example.org"
    assert (transport.username, transport.password) == ("u", "p")


@pytest.mark.parametrize(
    "url", ["http://mail.example.org", "smtp://", "smtp://mail.example.org?timeout=soon"]
)
def test_bad_urls_are_refused(url):
    with pytest.raises(ValueError):
        open_transport(url)


def test_bad_url_errors_do_not_show_the_password():
    with pytest.raises(ValueError) as failure:
        open_transport("smtp://user:s3cret@mail.example.org?timeout=soon")

    assert "s3cret" not in str(failure.value)


# TLS, with a throwaway certificate for 127.0.0.1


@pytest.fixture(scope="module")
def certificate(tmp_path_factory) -> tuple[Path, Path]:
    if shutil.which("openssl") is None:
        pytest.skip("openssl is needed to make a test certificate")
    folder = tmp_path_factory.mktemp("tls")
    cert, key = folder / "cert.pem", folder / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
         "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1",
         "-keyout", str(key), "-out", str(cert)],
        check=True,
        capture_output=True,
    )  # fmt: skip
    return cert, key


def server_context(certificate) -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(*map(str, certificate))
    return context


def client_context(certificate) -> ssl.SSLContext:
    return ssl.create_default_context(cafile=str(certificate[0]))


def test_starttls_upgrades_before_logging_in(certificate):
    with SmtpSink(starttls_context=server_context(certificate), credentials=("u", "p")) as sink:
        url = sink.url("smtp+starttls", userinfo="u:p")
        with open_transport(url, ssl_context=client_context(certificate)) as transport:
            transport.send(mail(1))
            transport.send(mail(2))

    assert sink.connections == 1
    assert sink.logins == [("u", "p")]
    assert len(sink.messages) == 2


def test_smtps_uses_implicit_tls(certificate):
    with (
        SmtpSink(ssl_context=server_context(certificate)) as sink,
        open_transport(sink.url("smtps"), ssl_context=client_context(certificate)) as transport,
    ):
        transport.send(mail(1))

    assert len(sink.messages) == 1


def test_untrusted_certificate_is_refused(certificate):
    with (
        SmtpSink(ssl_context=server_context(certificate)) as sink,
        open_transport(sink.url("smtps"), timeout=5) as transport,
        pytest.raises(TransientSendError, match="CERTIFICATE_VERIFY_FAILED"),
    ):
        transport.send(mail())


def test_leaving_on_an_error_sends_nothing_more(sink):
    with pytest.raises(RuntimeError), open_transport(sink.url()) as transport:
        transport.send(mail(1))
        waiting = transport.start(mail(2))
        raise RuntimeError("the caller failed mid-batch")

    with pytest.raises(TransientSendError):
        waiting.result()
    assert wait_for(lambda: sink.open_connections == 0)
    subjects = [r.message["Subject"] for r in sink.messages]
    if sink.pipelining:  # only its envelope had gone out: the server never got it
        assert subjects == ["Message 1"]
    else:  # its content had gone out: it may have arrived, and counts as not sent
        assert subjects in (["Message 1"], ["Message 1", "Message 2"])
